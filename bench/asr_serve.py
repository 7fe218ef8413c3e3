"""Speech to text through Ray Serve vs in-process: latency percentiles, throughput, end-to-end RTF.

    .venv/bin/python bench/asr_serve.py --checkpoint deploy/models/asr --requests 96 --concurrency 1 4 16

Starts a local Ray and the raydojo Serve application with only the ASR capability (the
deployment settings of deploy/serve/raydojo.yaml's ASRModel entry: replicas, CPUs), sends
held-out utterances from N concurrent clients over HTTP, and compares with calling the same
model in-process (features + batched network + greedy decoding). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from services.asr import corpus
from services.asr.audio import encode_wav

REPO = Path(__file__).resolve().parents[1]


def deployment_options(name: str) -> dict:
    cfg = yaml.safe_load((REPO / "deploy" / "serve" / "raydojo.yaml").read_text())
    for d in cfg["applications"][0]["deployments"]:
        if d["name"] == name:
            return {k: v for k, v in d.items() if k != "name"}
    return {}


async def clients(url: str, payloads: list[bytes], concurrency: int) -> list[float]:
    latencies: list[float] = []
    queue = list(payloads)

    async def client(http: httpx.AsyncClient):
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            r = await http.post(url, content=body, headers={"Content-Type": "audio/wav"})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(timeout=300) as http:
        await asyncio.gather(*[client(http) for _ in range(concurrency)])
    return latencies


def in_process(checkpoint: Path, audio: list[np.ndarray]) -> float:
    """Audio seconds per wall second when the model is called directly (batches of 16)."""
    import torch

    from services.asr.decode import decode_greedy
    from services.asr.features import log_mel
    from services.asr.model import load_model, predict

    torch.set_num_threads(1)
    model, _ = load_model((checkpoint / "model.pt").read_bytes())
    t0 = time.perf_counter()
    for s in range(0, len(audio), 16):
        for lp in predict(model, [log_mel(x).numpy() for x in audio[s:s + 16]]):
            decode_greedy(lp)
    return sum(len(x) for x in audio) / 16_000 / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(REPO / "deploy" / "models" / "asr"))
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seed", type=int, default=78)
    a = ap.parse_args()

    from ray import serve

    from services.asr.serve import ASRModel, model_uri
    from services.common.ray_utils import init_ray
    from services.serve.app import DojoIngress
    from services.serve.common import AppArgs

    bank = corpus.NoiseBank(a.seed)
    audio = [corpus.render(u, bank) for u in corpus.plan("test", a.requests, a.seed)]
    payloads = [encode_wav(x) for x in audio]
    seconds = sum(len(x) for x in audio) / 16_000
    out: dict = {"requests": a.requests, "audio_s": round(seconds, 1),
                 "asr_deployment": deployment_options("ASRModel")}
    out["in_process_audio_s_per_s"] = round(in_process(Path(a.checkpoint), audio), 1)

    init_ray()
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    # the application as build_app makes it, with the deployment settings of the Serve config applied
    args = AppArgs(asr_checkpoint=str(Path(a.checkpoint).resolve()), api_keys_env="DOJO_BENCH_NO_KEYS")
    asr = ASRModel.options(**deployment_options("ASRModel")).bind(model_uri(args))
    app = DojoIngress.options(**deployment_options("DojoIngress")).bind({"asr": asr}, args.model_dump())
    serve.run(app, name="asrbench", route_prefix="/asrbench")
    url = "http://127.0.0.1:8000/asrbench/v1/asr/transcribe"
    asyncio.run(clients(url, payloads[:8], 4))  # warm-up
    for c in a.concurrency:
        t0 = time.perf_counter()
        lat = asyncio.run(clients(url, payloads, c))
        wall = time.perf_counter() - t0
        out[f"c{c}"] = {"p50_ms": round(1e3 * float(np.percentile(lat, 50)), 1),
                        "p99_ms": round(1e3 * float(np.percentile(lat, 99)), 1),
                        "audio_s_per_s": round(seconds / wall, 1), "rtf_end_to_end": round(wall / seconds, 4)}
    stats = serve.get_deployment_handle("ASRModel", app_name="asrbench").stats.remote().result()
    out["batching"] = stats
    best = max(v["audio_s_per_s"] for k, v in out.items() if k.startswith("c") and isinstance(v, dict))
    out["serve_overhead_ratio"] = round(out["in_process_audio_s_per_s"] / best, 2)
    serve.delete("asrbench")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

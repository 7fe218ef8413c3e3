"""Explain service latency and throughput, over real HTTP on a local Ray Serve.

    python bench/explain_latency.py --requests 50 --concurrency 16 > explain_latency.json

1. in-process compute time per method (the explainer alone, one torch thread, no Serve), p50 / p99;
2. sequential HTTP requests per method and model: p50 / p99 end-to-end latency;
3. throughput (requests/s) with ``--concurrency`` clients, ExplainModel with dynamic batching
   (max_batch_size 16) and without (max_batch_size 1), for each method on MNIST.
With a CUDA device the ExplainModel replica runs on it (``--gpus`` per replica); the JSON records
the device. Uses the committed checkpoint unless ``--checkpoint`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
METHODS = ("cam", "gradcam", "lime", "shap")


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def in_process(checkpoint: str, n: int, samples: int) -> dict:
    import torch

    from services.explain.base import Options
    from services.explain.explainers import METHODS as EXPLAINERS
    from services.explain.models import image_data
    from services.explain.train import load_bundles

    torch.set_num_threads(1)  # as in a Serve replica (Ray sets OMP_NUM_THREADS=1 for fractional CPUs)
    b = load_bundles(checkpoint)["mnist"]
    x, _ = image_data("mnist", "test")
    out = {}
    for m in METHODS:
        times = []
        for i in range(n):
            t = b.predict_proba(x[i:i + 1]).argmax(1)
            t0 = time.perf_counter()
            EXPLAINERS[m].explain(b, x[i:i + 1], t, Options(samples=samples))
            times.append((time.perf_counter() - t0) * 1e3)
        out[m] = {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99)}
    return out


def deploy(checkpoint: str, max_batch_size: int, gpus: float, port: int, name: str) -> str:
    from ray import serve

    from services.explain.serve import ExplainModel
    from services.serve.app import DojoIngress
    from services.serve.common import AppArgs

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    model = ExplainModel.options(ray_actor_options={"num_cpus": 1, "num_gpus": gpus}, max_ongoing_requests=64)
    app = DojoIngress.bind({"explain": model.bind(checkpoint, max_batch_size=max_batch_size)},
                           AppArgs(api_keys_env="DOJO_BENCH_NO_KEYS").model_dump())
    serve.run(app, name=name, route_prefix=f"/{name}")
    return f"http://127.0.0.1:{port}/{name}"


def payloads() -> dict[str, dict]:
    from services.explain.models import image_data, tabular_data

    x, _, names = tabular_data("test")
    return {"mnist": {"array": image_data("mnist", "test")[0][0].tolist()},
            "cancer": {"features": {n: float(v) for n, v in zip(names, x[0], strict=True)}}}


def sequential(url: str, n: int, samples: int) -> dict:
    out = {}
    bodies = payloads()
    with httpx.Client(timeout=120) as client:
        for model, body in bodies.items():
            for m in METHODS:
                if model == "cancer" and m in ("cam", "gradcam"):
                    continue
                path = f"{url}/v1/explain/{m}?model={model}&samples={samples}"
                client.post(path, json=body).raise_for_status()  # warm-up
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    client.post(path, json=body).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1e3)
                out[f"{model}/{m}"] = {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "n": n}
    return out


async def _load(url: str, method: str, body: dict, total: int, concurrency: int, samples: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300) as client:
        async def one():
            async with sem:
                r = await client.post(f"{url}/v1/explain/{method}?samples={samples}", json=body)
                r.raise_for_status()

        await one()  # warm-up
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(total)))
        return total / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "deploy" / "models" / "explain"))
    ap.add_argument("--requests", type=int, default=50, help="sequential requests per method and model")
    ap.add_argument("--throughput-requests", type=int, default=64, help="requests per throughput run")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--samples", type=int, default=512, help="LIME / SHAP samples")
    ap.add_argument("--gpus", type=float, default=0.0, help="GPUs per ExplainModel replica (fractions allowed)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("DOJO_BENCH_PORT", "8000")))
    args = ap.parse_args()

    import ray
    import torch
    from ray import serve

    result: dict = {"device": "cuda" if torch.cuda.is_available() and args.gpus > 0 else "cpu",
                    "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()[0], "samples": args.samples}
    print("in-process ...", file=sys.stderr)
    result["in_process_mnist"] = in_process(args.checkpoint, max(10, args.requests // 2), args.samples)
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    try:
        print("sequential ...", file=sys.stderr)
        url = deploy(args.checkpoint, 16, args.gpus, args.port, "bench-seq")
        result["sequential"] = sequential(url, args.requests, args.samples)
        serve.delete("bench-seq")
        body = payloads()["mnist"]
        result["throughput_rps"] = {}
        for batch in (1, 16):
            url = deploy(args.checkpoint, batch, args.gpus, args.port, f"bench-b{batch}")
            for m in METHODS:
                print(f"throughput {m} max_batch_size={batch} ...", file=sys.stderr)
                rps = asyncio.run(_load(url, m, body, args.throughput_requests, args.concurrency, args.samples))
                result["throughput_rps"][f"{m}/batch{batch}"] = round(rps, 2)
            serve.delete(f"bench-b{batch}")
        result["load_avg_end"] = os.getloadavg()[0]
        print(json.dumps(result, indent=1), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()

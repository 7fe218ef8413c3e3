"""The GPU paths in one prepared run: CUDA device selection, Ray ``num_gpus`` placement, speed.

Run on a GPU machine from the repository root, through ``bench/gpu_check.sh`` (which installs the
wheels that ``bench/gpu_wheels.py`` built into ``.whl/`` when the machine lacks Ray and friends)::

    bash bench/gpu_check.sh                       # all checks: an estimated ~5 minutes on a 16-core H100 box (not yet timed)
    python bench/gpu_check.py --only env,asr_decode

Each check writes its result into ``<out>/gpu_check.json`` as soon as it ends (a run cut short keeps
what it measured); the exit code is 1 when any check failed. Checks:

- ``env``: torch, CUDA, the GPU, Ray.
- ``ray_placement``: two Ray actors with ``num_gpus=0.5`` share one GPU and both compute on it (what a
  Serve deployment with ``num_gpus: 0.5`` in ``deploy/serve/`` relies on).
- ``a3c_cartpole``: ``dojo a3c train``'s loop with the parameter server on the GPU (``--ps-gpus 1``)
  reaches a greedy return of 475 on CartPole-v1; ``ps_device`` must say cuda.
- ``a3c_throughput``: Pong frames/s with one worker per spare core, the server on the CPU and on the
  GPU; efficiency = system frames/s ÷ (raw frames/s of one core × workers) (the issue's target: ≥ 70 %),
  the per-apply cost of the server on both devices.
- ``asr_decode``: the committed speech model gives the same greedy transcripts on the GPU as on the
  CPU for held-out utterances, and its network's real-time factor at batch 1 and 16 on both.
- ``asr_train_step``: one training step (bf16 autocast, CTC, backward, AdamW) on the GPU vs one CPU
  thread: milliseconds and utterances/s.
- ``asr_train_ray``: ``dojo asr train --gpus 1``'s Ray task (``num_gpus=1``) trains on CUDA from a
  cached corpus and writes model.pt.

``--allow-cpu --quick`` runs every check on the CPU with tiny sizes: the tests run the script that
way, so that the GPU machine's minutes are not spent finding its bugs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))


class Ctx:
    def __init__(self, a: argparse.Namespace):
        self.quick, self.sample = a.quick, Path(a.asr_sample)
        self.gpu = torch.cuda.is_available()
        if not self.gpu and not a.allow_cpu:
            raise SystemExit("gpu_check: torch sees no CUDA device (pass --allow-cpu to run the checks on the CPU)")
        self.device = "cuda" if self.gpu else "cpu"
        self.cpus = os.cpu_count() or 1
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check-"))

    def ray(self):
        import ray

        from services.common.ray_utils import init_ray

        init_ray(num_cpus=self.cpus)
        return ray


def check_env(c: Ctx) -> dict:
    import ray

    out = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": c.gpu, "cpus": c.cpus,
           "python": sys.version.split()[0], "ray": ray.__version__}
    if c.gpu:
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                   bf16=torch.cuda.is_bf16_supported(), gpus=torch.cuda.device_count())
    if shutil.which("nvidia-smi"):
        out["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
    out["ok"] = True
    return out


def check_ray_placement(c: Ctx) -> dict:
    ray = c.ray()
    gpus = ray.cluster_resources().get("GPU", 0)

    @ray.remote
    class Probe:
        def where(self):
            import torch

            x = torch.ones(256, 256, device="cuda" if torch.cuda.is_available() else "cpu")
            return {"gpu_ids": [str(i) for i in ray.get_gpu_ids()],
                    "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "cuda": torch.cuda.is_available(), "computed_on": str((x @ x).device)}

    share = 0.5 if c.gpu else 0
    probes = [Probe.options(num_gpus=share, num_cpus=0).remote() for _ in range(2)]
    seen = ray.get([p.where.remote() for p in probes], timeout=120)
    for p in probes:
        ray.kill(p)
    same = seen[0]["gpu_ids"] == seen[1]["gpu_ids"]
    ok = all(s["cuda"] and s["computed_on"].startswith("cuda") for s in seen) and same if c.gpu else True
    return {"ok": ok, "cluster_gpus": gpus, "num_gpus_each": share, "actors": seen, "same_gpu": same}


def check_a3c_cartpole(c: Ctx) -> dict:
    from services.a3c.train import TrainArgs, train

    c.ray()
    args = TrainArgs(env="CartPole-v1", workers=2 if c.quick else min(4, c.cpus - 1), seed=0,
                     max_frames=20_000 if c.quick else 300_000, target_return=None if c.quick else 475.0,
                     ps_gpus=1.0 if c.gpu else 0.0, run_dir=str(c.tmp / "a3c"), eval_episodes=2 if c.quick else 20)
    args.validate()
    res = train(args)
    keep = ("frames", "wall_s", "fps", "eval_return_mean", "target_reached", "grads_applied", "staleness_mean",
            "ps_device", "workers")
    ok = res["ps_device"].startswith(c.device) and (c.quick or res["target_reached"])
    return {"ok": bool(ok), **{k: res[k] for k in keep}}


def check_a3c_throughput(c: Ctx) -> dict:
    import a3c_throughput as bench  # bench/a3c_throughput.py

    c.ray()
    torch.set_num_threads(1)
    workers = 2 if c.quick else max(2, c.cpus - 2)  # one core for the server, the driver and Ray's daemons
    frames = 4_000 if c.quick else 600_000
    raw = 4 * bench.raw_env_rate("ALE/Pong-v5", 8, 1.0 if c.quick else 5.0)  # frames/s of one core
    net = bench.network_cost_per_step("ALE/Pong-v5", reps=3 if c.quick else 20)
    ceiling = (4 / raw) / (4 / raw + net["network_s_per_step"])
    out = {"raw_frames_per_s_one_core": raw, "workers": workers, "ceiling_efficiency": ceiling,
           "network_s_per_step": net["network_s_per_step"]}
    servers = {"cpu": 0.0, **({"cuda": 1.0} if c.gpu else {})}  # where the parameter server runs -> its ps_gpus
    for dev, ps_gpus in servers.items():
        run = bench.system_rate("ALE/Pong-v5", workers, frames, envs_per_worker=8, ps_gpus=ps_gpus)
        run["efficiency"] = run["fps"] / (raw * workers)
        out[f"ps_{dev}"] = run
        out[f"server_{dev}"] = bench.server_apply_cost(n=20 if c.quick else 200, ps_gpus=ps_gpus)
    out["ok"] = all(out[f"ps_{dev}"]["ps_device"].startswith(dev) for dev in servers)
    return out


def _sample_split(c: Ctx, name: str):
    from services.asr import corpus

    path = c.sample / "data" / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: build it with `python bench/gpu_wheels.py` (or --asr-sample)")
    return corpus.Split.from_bytes(path.read_bytes())


def check_asr_decode(c: Ctx) -> dict:
    from services.asr.model import load_model, predict
    from services.asr.train import greedy_texts, word_error_rate

    test = _sample_split(c, "test")
    feats = [test.features(i) for i in range(len(test))]
    blob = (ROOT / "deploy/models/asr/model.pt").read_bytes()
    torch.set_num_threads(1)
    out: dict = {"utterances": len(test), "audio_s": float(test.durations.sum())}
    texts = {}
    for dev in dict.fromkeys(["cpu", c.device]):
        model, _ = load_model(blob, dev)
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        predict(model, feats[:2], dev)  # warm-up
        for batch in (1, 16):
            sync()
            t0 = time.perf_counter()
            for s in range(0, len(feats), batch):
                predict(model, feats[s:s + batch], dev)
            sync()
            out[f"rtf_network_{dev}_batch{batch}"] = (time.perf_counter() - t0) / out["audio_s"]
        texts[dev] = greedy_texts(model, test, dev)
        out[f"wer_greedy_{dev}"] = word_error_rate(list(test.texts), texts[dev])
    out["same_transcripts"] = float(np.mean([a == b for a, b in zip(texts["cpu"], texts[c.device], strict=True)]))
    out["ok"] = out["same_transcripts"] >= 0.95 and abs(out["wer_greedy_cpu"] - out[f"wer_greedy_{c.device}"]) <= 0.02
    return out


def _train_step_ms(device: str, batch: int, repeats: int) -> float:
    """Median ms of bench/asr_train_step.py's step for the recipe's model (self-conditioning, intermediate CTC)."""
    import asr_train_step  # bench/asr_train_step.py

    from services.asr.model import CTCModel, ModelConfig
    from services.asr.train import use_bf16

    torch.manual_seed(0)
    model = CTCModel(ModelConfig(self_condition=True)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = asr_train_step.random_batch(batch, 250, device)
    bf16 = use_bf16("auto", device)
    times = [asr_train_step.train_step(model, opt, data, 0.3, device, bf16) for _ in range(repeats + 2)]
    return float(np.median(times[2:])) * 1e3


def check_asr_train_step(c: Ctx) -> dict:
    torch.set_num_threads(1)
    cpu_batch, dev_batch, reps = (2, 4, 2) if c.quick else (16, 64, 10)
    cpu_ms = _train_step_ms("cpu", cpu_batch, reps)
    out = {"cpu_1_thread": {"batch": cpu_batch, "ms_per_step": cpu_ms, "utterances_per_s": cpu_batch / cpu_ms * 1e3}}
    if c.gpu:
        for batch in (dev_batch, 4 * dev_batch):
            ms = _train_step_ms("cuda", batch, reps)
            out[f"cuda_batch{batch}"] = {"ms_per_step": ms, "utterances_per_s": batch / ms * 1e3}
    out["ok"] = True
    return out


def _fit_with_recorded_voices(args, uri: str, voices: dict, device: str) -> dict:
    """Ray task body: ``dojo asr train --gpus``'s loop (``_fit_remote``) on a corpus rendered elsewhere. The
    corpus cache key holds the espeak-ng voice split, read here from the file the sample came with, since
    the GPU machine has no espeak-ng to list its voices."""
    from services.asr import corpus, train

    corpus.voice_split = lambda: {k: tuple(v) for k, v in voices.items()}
    return train._fit_remote(args, uri) if device == "cuda" else train.fit(args, uri, "cpu")


def check_asr_train_ray(c: Ctx) -> dict:
    from services.asr.model import load_model
    from services.asr.train import TrainArgs

    ray = c.ray()
    run = c.tmp / "asr"
    shutil.copytree(c.sample, run)
    manifest = json.loads((run / "data/manifest.json").read_text())
    voices = json.loads((run / "voice_split.json").read_text())
    args = TrainArgs(run_dir=str(run), n_train=manifest["train"]["n"], n_val=manifest["val"]["n"],
                     seed=manifest["train"]["seed"], epochs=1 if c.quick else 4, gpus=1.0 if c.gpu else 0.0)
    args.validate()
    task = ray.remote(_fit_with_recorded_voices).options(num_gpus=args.gpus, num_cpus=1)
    t0 = time.monotonic()
    res = ray.get(task.remote(args, str(run), voices, c.device), timeout=600)
    model, meta = load_model((run / "model.pt").read_bytes())
    ok = res["device"] == c.device and res["steps"] > 0 and meta["steps"] == res["steps"]
    return {"ok": bool(ok), "seconds": time.monotonic() - t0, **{k: res[k] for k in ("device", "precision", "epochs",
                                                                                  "steps", "train_s", "val_wer")}}


CHECKS = {name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu_check", help="folder for gpu_check.json")
    ap.add_argument("--only", default="", help=f"comma-separated checks (of {', '.join(CHECKS)})")
    ap.add_argument("--asr-sample", default=str(ROOT / ".whl/asr"), help="run-dir of the small ASR corpus")
    ap.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no CUDA (tests)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (tests)")
    a = ap.parse_args(argv)
    names = [n for n in a.only.split(",") if n] or list(CHECKS)
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        ap.error(f"unknown checks {unknown}: choose from {', '.join(CHECKS)}")
    c = Ctx(a)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": c.device, "quick": c.quick}
    t_all = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        print(f"gpu_check: {name} ...", flush=True)
        try:
            results[name] = CHECKS[name](c)
        except Exception:  # noqa: BLE001 - one broken check must not cost the others' minutes
            results[name] = {"ok": False, "error": traceback.format_exc()[-3000:]}
        results[name]["check_s"] = round(time.monotonic() - t0, 1)
        print(f"gpu_check: {name}: {'ok' if results[name]['ok'] else 'FAILED'} in {results[name]['check_s']} s "
              f"(total {time.monotonic() - t_all:.0f} s)\n{json.dumps(results[name], indent=1, default=str)}",
              flush=True)
        (out_dir / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    shutil.rmtree(c.tmp, ignore_errors=True)
    failed = [n for n in names if not results[n]["ok"]]
    print(f"gpu_check: {len(names) - len(failed)}/{len(names)} checks passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

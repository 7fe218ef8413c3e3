"""Meta-iterations/s and peak memory: second-order MAML vs first-order MAML vs Reptile.

    .venv/bin/python bench/maml_speed.py                       # CPU, 1 thread, both task families
    .venv/bin/python bench/maml_speed.py --device cuda         # GPU (peak = torch.cuda.max_memory_allocated)
    .venv/bin/python bench/maml_speed.py --task fewshot --steps 1 5 --seconds 20

Each configuration runs in its own subprocess so that peak memory is its own: on CPU the
peak resident set size (VmHWM, reset after the warm-up with /proc/self/clear_refs) and its
increase over the resident size before the timed loop; on CUDA the peak of allocated memory.
Prints a Markdown table (and JSON lines with --json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run_one(task: str, algo: str, steps: int, device: str, seconds: float, threads: int) -> dict:
    import torch

    sys.path.insert(0, ROOT)
    from services.maml.train import TrainArgs, Trainer

    if threads:
        torch.set_num_threads(threads)
    args = TrainArgs(algo=algo, task=task, inner_steps=steps, device=device, threads=threads, baselines=False)
    args.validate()
    trainer = Trainer(args)
    gen = torch.Generator().manual_seed(0)
    batches = [trainer.sample("train", args.meta_batch, args.shots, args.queries, gen) for _ in range(8)]
    for b in batches[:2]:  # warm-up
        trainer.learner.step(b)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _rss_kib("VmRSS")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        trainer.learner.step(batches[n % len(batches)])
        n += 1
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {"task": task, "algo": algo, "inner_steps": steps, "meta_batch": args.meta_batch, "device": device,
           "threads": torch.get_num_threads(), "meta_it_per_s": n / dt, "iterations": n}
    if cuda:
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_increase_mib"] = (torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()) / 2**20
    else:
        out["peak_mib"] = _rss_kib("VmHWM") / 1024
        out["peak_increase_mib"] = (_rss_kib("VmHWM") - before) / 1024
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", nargs="+", default=["sinusoid", "fewshot"], choices=["sinusoid", "fewshot"])
    p.add_argument("--algo", nargs="+", default=["maml", "fomaml", "reptile"])
    p.add_argument("--steps", nargs="+", type=int, default=[1, 5], help="inner steps (Reptile: the larger only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=10.0, help="timed loop length per configuration")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--one", nargs=3, metavar=("TASK", "ALGO", "STEPS"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one[0], a.one[1], int(a.one[2]), a.device, a.seconds, a.threads)))
        return
    rows = []
    for task in a.task:
        for algo in a.algo:
            for steps in ([max(a.steps)] if algo == "reptile" else a.steps):
                cmd = [sys.executable, __file__, "--one", task, algo, str(steps), "--device", a.device,
                       "--seconds", str(a.seconds), "--threads", str(a.threads)]
                res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                rows.append(res)
                if a.json:
                    print(json.dumps(res), flush=True)
    print("| task | algo | inner steps | meta-batch | device | meta-it/s | peak MiB | peak increase MiB |")
    print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['task']} | {r['algo']} | {r['inner_steps']} | {r['meta_batch']} | {r['device']} "
              f"| {r['meta_it_per_s']:.1f} | {r['peak_mib']:.0f} | {r['peak_increase_mib']:.1f} |")


if __name__ == "__main__":
    main()

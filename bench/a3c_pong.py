"""Train A3C on ALE/Pong-v5 to a mean greedy return of 18 and record wall time and frames.

    python bench/a3c_pong.py --workers 16 --run-dir runs/pong-bench

Meant for a machine with many cores (the paper used 16 CPU threads; a public PyTorch A3C
solves Pong in about 15 minutes with 16 processes). Settings: the paper's network,
t_max 20, one environment per worker, Adam lr 1e-4 (shared statistics in the server),
entropy 0.01, gradient clipping 40, γ 0.99, greedy evaluation of 3 games every 1 M frames.
Writes the run's result.json plus bench_pong.json (wall time, frames, cores).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from services.a3c.train import TrainArgs, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--run-dir", default="runs/pong-bench")
    ap.add_argument("--max-frames", type=int, default=80_000_000)
    ap.add_argument("--target", type=float, default=18.0)
    ap.add_argument("--ps-gpus", type=float, default=0.0)
    a = ap.parse_args()
    args = TrainArgs(env="ALE/Pong-v5", workers=a.workers, max_frames=a.max_frames, target_return=a.target,
                     run_dir=a.run_dir, envs_per_worker=1, t_max=20, optimizer="adam", lr=1e-4,
                     max_grad_norm=40.0, entropy_coef=0.01, eval_every_frames=1_000_000, eval_episodes=3,
                     checkpoint_every=2000, ps_gpus=a.ps_gpus)
    args.validate()
    t0 = time.monotonic()
    res = train(args)
    out = {"wall_s": time.monotonic() - t0, "frames": res["frames"], "eval_return_mean": res["eval_return_mean"],
           "target_reached": res["target_reached"], "workers": a.workers, "cores": os.cpu_count()}
    Path(a.run_dir, "bench_pong.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Train A3C on ALE/Pong-v5 to a mean greedy return of 18 and record wall time and frames.

    python bench/a3c_pong.py --workers 16 --run-dir runs/pong-bench

Meant for a machine with many cores (the paper used 16 CPU threads; a public PyTorch A3C
solves Pong in about 15 minutes with 16 processes). Settings: the paper's network,
t_max 20, one environment per worker, Adam lr 1e-4 (shared statistics in the server),
entropy 0.01, gradient clipping 40, γ 0.99, greedy evaluation of 3 games every 1 M frames.
Writes the run's result.json plus bench_pong.json (wall time, frames, cores).

On a small machine, give each worker a batch of environments instead (16 environments in all, t_max 5)
and a time cap:

    python bench/a3c_pong.py --workers 2 --envs-per-worker 8 --t-max 5 --max-minutes 40 --run-dir runs/pong-2core

(OpenAI baselines' A2C optimizer, RMSProp 7e-4 with clipping 0.5, killed this network's first layer within a few
hundred updates here: docs/a3c.md, "Atari: a dead first layer".)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from services.a3c.train import TrainArgs, train
from services.common.progress import setup_logging


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--run-dir", default="runs/pong-bench")
    ap.add_argument("--max-frames", type=int, default=80_000_000)
    ap.add_argument("--target", type=float, default=18.0)
    ap.add_argument("--ps-gpus", type=float, default=0.0)
    ap.add_argument("--envs-per-worker", type=int, default=1)
    ap.add_argument("--t-max", type=int, default=20)
    ap.add_argument("--optimizer", choices=("adam", "rmsprop"), default="adam")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-grad-norm", type=float, default=40.0)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    a = ap.parse_args()
    setup_logging()  # progress lines with rate and ETA, greedy evaluations
    args = TrainArgs(env="ALE/Pong-v5", workers=a.workers, max_frames=a.max_frames, target_return=a.target,
                     run_dir=a.run_dir, envs_per_worker=a.envs_per_worker, t_max=a.t_max, optimizer=a.optimizer,
                     lr=a.lr, max_grad_norm=a.max_grad_norm, entropy_coef=0.01, eval_every_frames=1_000_000,
                     eval_episodes=3, checkpoint_every=2000, ps_gpus=a.ps_gpus, max_minutes=a.max_minutes,
                     resume=a.resume)
    args.validate()
    t0 = time.monotonic()
    res = train(args)
    out = {"wall_s": time.monotonic() - t0, "wall_s_total": res["wall_s_total"], "frames": res["frames"],
           "eval_return_mean": res["eval_return_mean"], "target_reached": res["target_reached"],
           "workers": a.workers, "cores": os.cpu_count()}
    Path(a.run_dir, "bench_pong.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()

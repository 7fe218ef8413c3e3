"""ASHA vs no scheduler on the same GAN sweep: trials/hour and wall time to a target metric.

    python bench/gan_sweep.py --model pix2pix --num-samples 8 --max-iters 8 --target 0.12

Runs `services.sweeps.gan.sweep` twice (same seed, same search space) and reads Tune's
per-trial progress to find when the best-so-far metric first reached --target.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from services.common.config import rebuild
from services.sweeps.gan import SweepArgs, sweep


def time_to_target(run_dir: Path, metric: str, mode: str, target: float) -> float | None:
    """Seconds from the sweep's first report until any trial's metric reached target."""
    rows = []
    for f in (run_dir / "tune").glob("*/result.json"):
        rows += [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
    if not rows:
        return None
    t0 = min(r["timestamp"] - r["time_this_iter_s"] for r in rows)
    hits = [r["timestamp"] - t0 for r in rows if (r[metric] <= target if mode == "min" else r[metric] >= target)]
    return min(hits) if hits else None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="pix2pix")
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--max-iters", type=int, default=8)
    p.add_argument("--steps-per-iter", type=int, default=10)
    p.add_argument("--target", type=float, required=True)
    a = p.parse_args()
    for scheduler in ("asha", "none"):
        with tempfile.TemporaryDirectory() as d:
            args = rebuild(SweepArgs, {"model": a.model, "scheduler": scheduler, "num_samples": a.num_samples,
                                       "max_iters": a.max_iters, "steps_per_iter": a.steps_per_iter,
                                       "eval_samples": 200, "run_dir": d, "cpus_per_trial": 1.0})
            r = sweep(args)
            ttt = time_to_target(Path(d), r["metric"], r["mode"], a.target)
            print(json.dumps({"scheduler": scheduler, "wall_s": r["wall_s"], "best_metric": r["best_metric"],
                              "trials_per_hour": r["trials"] / r["wall_s"] * 3600, "iterations": r["iterations"],
                              "s_to_target": ttt, "target": a.target}), flush=True)


if __name__ == "__main__":
    main()

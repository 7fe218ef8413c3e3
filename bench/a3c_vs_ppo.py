"""Wall time to return 475 on CartPole-v1: A3C (async), A2C (sync) vs RLlib PPO, same machine, same run.

    python bench/a3c_vs_ppo.py --seeds 0 1 2 > bench/results/a3c_vs_ppo.json

Whole-process wall time of each command (Ray start-up included), median over seeds.
A3C/A2C stop when the *greedy evaluation* (20 episodes) reaches 475 — a stricter bar than
PPO's *training* return, which is what RLlib's example stops on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HERE = Path(__file__).parent


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return time.monotonic() - t0, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--skip-ppo", action="store_true")
    a = ap.parse_args()
    rows: dict[str, list[dict]] = {"a3c-async": [], "a2c-sync": [], "rllib-ppo": []}
    for seed in a.seeds:
        for mode, key in (("async", "a3c-async"), ("sync", "a2c-sync")):
            with tempfile.TemporaryDirectory() as d:
                wall, _ = timed([str(BIN / "dojo"), "a3c", "train", "--mode", mode, "--seed", str(seed),
                                 "--target-return", "475", "--max-frames", "1000000", "--run-dir", d])
                res = json.loads(Path(d, "result.json").read_text())
            rows[key].append({"seed": seed, "wall_s": wall, "frames": res["frames"],
                              "reached": res["target_reached"], "eval_return": res["eval_return_mean"]})
            print(key, rows[key][-1], file=sys.stderr)
        if not a.skip_ppo:
            wall, out = timed([sys.executable, str(HERE / "rllib_ppo_cartpole.py"), "--seed", str(seed)])
            r = json.loads(out.strip().splitlines()[-1])
            rows["rllib-ppo"].append({"seed": seed, "wall_s": wall, "frames": r["timesteps"],
                                      "reached": r["reached"], "train_return": r["train_return"]})
            print("rllib-ppo", rows["rllib-ppo"][-1], file=sys.stderr)
    summary = {k: {"median_wall_s": statistics.median(r["wall_s"] for r in v),
                   "median_frames": statistics.median(r["frames"] for r in v),
                   "all_reached": all(r["reached"] for r in v), "runs": v} for k, v in rows.items() if v}
    if "rllib-ppo" in summary:
        ppo = summary["rllib-ppo"]["median_wall_s"]
        for k in ("a3c-async", "a2c-sync"):
            summary[k]["ratio_to_ppo"] = summary[k]["median_wall_s"] / ppo
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

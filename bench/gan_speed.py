"""Seconds per training iteration for every GAN model (CPU; the models do not use CUDA yet).

    python bench/gan_speed.py --steps 20 --threads 1

Prints one JSON line per model: seconds per generator update (with its D/critic steps) and
per evaluation. Not a timed test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from services.common.config import rebuild
from services.gan.base import run_iteration
from services.gan.train import MODELS, args_class, model_module


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", nargs="*", default=list(MODELS))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name in a.models:
        args = rebuild(args_class(name), {"eval_samples": 1000})
        model = model_module(name).Model(args)
        run_iteration(model, 2)  # warm-up
        it = run_iteration(model, a.steps)
        t0 = time.perf_counter()
        model.evaluate()
        print(json.dumps({"model": name, "s_per_update": it["iter_s"] / a.steps,
                          "s_per_iter_default": it["iter_s"] / a.steps * args.steps_per_iter,
                          "s_per_eval": time.perf_counter() - t0, "threads": a.threads,
                          "batch_size": args.batch_size}), flush=True)


if __name__ == "__main__":
    main()

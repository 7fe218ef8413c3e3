"""``dojo gan train --model dcgan|wgan|wgan-gp|cgan|pix2pix|cyclegan --run-dir D``: one run.

The loop is the same for every model (see ``services.gan.base``): evaluate the untrained
model once (the baseline every quality claim is compared with), then per iteration
``steps_per_iter`` updates + an evaluation, a checkpoint and a sample grid every
``checkpoint_every`` iterations. ``result.json`` holds the final metrics, the untrained ones
(``initial_*``), ``metric_name`` / ``metric`` (what a sweep optimises) and timings.
"""

from __future__ import annotations

import importlib
import sys
import time
from types import ModuleType

import torch

from services.common import checkpoint
from services.common.config import fail, parse, to_dict
from services.common.progress import Progress, log, setup_logging
from services.common.rundir import RunDir
from services.gan.base import run_iteration, write_samples

MODELS = {
    "dcgan": "services.gan.dcgan",
    "wgan": "services.gan.wgan",
    "wgan-gp": "services.gan.wgan",
    "cgan": "services.gan.cgan",
    "pix2pix": "services.gan.pix2pix",
    "cyclegan": "services.gan.cyclegan",
}


def model_module(name: str) -> ModuleType:
    return importlib.import_module(MODELS[name])


def args_class(name: str) -> type:
    mod = model_module(name)
    return mod.ARGS[name] if hasattr(mod, "ARGS") else mod.Args


def metric_label(name: str, data: str) -> str:
    return model_module(name).METRIC_LABEL.format(data={"mnist": "MNIST", "fashion": "Fashion"}[data])


def split_model(argv: list[str], prog: str) -> tuple[str, list[str]]:
    """Pull ``--model NAME`` (or ``--model=NAME``) out of argv; exit 2 on a missing/unknown model."""
    rest, model = [], None
    it = iter(argv)
    for a in it:
        if a == "--model":
            model = next(it, None)
            if model is None:
                fail(prog, "--model needs a value")
        elif a.startswith("--model="):
            model = a.split("=", 1)[1]
        else:
            rest.append(a)
    if any(a in ("-h", "--help") for a in rest) and model is None:
        print(f"usage: {prog} --model {{{','.join(MODELS)}}} [--flags]   ({prog} --model M --help for M's flags)")
        raise SystemExit(0)
    if model is None:
        fail(prog, f"--model is required (choose from {', '.join(MODELS)})")
    if model not in MODELS:
        fail(prog, f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    return model, rest


def train(name: str, args) -> dict:
    """Run one training; returns result.json's content."""
    if args.threads:
        torch.set_num_threads(args.threads)
    mod = model_module(name)
    run_dir = RunDir(args.run_dir).ensure_writable()
    model = mod.Model(args)
    start, initial = 0, None
    if args.resume and (latest := checkpoint.load_latest(run_dir)) is not None:
        start, state = latest
        model.load_state_dict(state["model"])
        initial = state["initial"]
        log.info("resumed %s from iteration %d", name, start)
    run_dir.write_json("config.json", {"model": name, **to_dict(args)})
    if initial is None:
        initial = model.evaluate()
    t0, train_s, metrics, losses = time.time(), 0.0, dict(initial), {}
    with Progress(f"gan {name}", total=args.iters, unit="it", initial=start) as bar:
        for it in range(start, args.iters):
            losses = run_iteration(model, args.steps_per_iter)
            train_s += losses["iter_s"]
            metrics = model.evaluate()
            bar.update(it + 1, **{mod.METRIC: metrics[mod.METRIC]})
            if (it + 1) % args.checkpoint_every == 0 or it + 1 == args.iters:
                checkpoint.save(run_dir, it + 1, {"model": model.state_dict(), "initial": initial},
                                keep=args.keep_checkpoints)
                write_samples(run_dir, model, it + 1)
    done = max(args.iters - start, 1)
    result = {
        "model": name, "data": args.data, "iters": args.iters,
        "metric_name": metric_label(name, args.data), "metric_key": mod.METRIC, "mode": mod.MODE,
        "metric": metrics[mod.METRIC], "initial_metric": initial[mod.METRIC],
        **metrics, **{f"initial_{k}": v for k, v in initial.items()},
        **{k: v for k, v in losses.items() if k != "iter_s"},
        "s_per_iter": train_s / done, "wall_s": time.time() - t0,
    }
    run_dir.write_json("result.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    prog = "dojo gan train"
    argv = list(sys.argv[1:] if argv is None else argv)
    name, rest = split_model(argv, prog)
    args = parse(args_class(name), rest, prog)
    setup_logging()
    result = train(name, args)
    print(f"{name}: {result['metric_name']} {result['initial_metric']:.4g} -> {result['metric']:.4g} "
          f"({result['s_per_iter']:.2f} s/iter) -> {args.run_dir}/result.json")


if __name__ == "__main__":
    main()

"""Small trained generators committed under ``deploy/models/gan/`` (the non-slow quality tests use them).

    python -m services.gan.pretrained --model dcgan --steps 1500 --out deploy/models/gan/dcgan-mnist.pt

trains the model with its default ``Args`` (``threads=1``) for ``--steps`` generator
updates — no evaluation, so it needs no classifier — and saves the generator weights
(and the arguments) every ``--save-every`` steps. ``load(path)`` rebuilds the ``Model``
with those weights; the tests then measure its quality against the untrained model's.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from services.common.config import rebuild, to_dict
from services.gan.train import MODELS, args_class, model_module

GENERATORS = {"cyclegan": ("G", "F")}  # modules whose generator is not just `G`


def _save(model, name: str, args, steps: int, out: str, command: str) -> None:
    nets = GENERATORS.get(name, ("G",))
    state = {"model": name, "args": to_dict(args), "steps": steps, "command": command.format(steps=steps),
             **{k: getattr(model, k).state_dict() for k in nets}}
    tmp = f"{out}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, out)


def load(path: str):
    """(name, Model) with the saved generator weights."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    name = state["model"]
    model = model_module(name).Model(rebuild(args_class(name), state["args"]))
    for k in GENERATORS.get(name, ("G",)):
        getattr(model, k).load_state_dict(state[k])
    return name, model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=list(MODELS), required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    args = rebuild(args_class(a.model), {"seed": a.seed, "run_dir": "unused"})
    model = model_module(a.model).Model(args)
    command = f"python -m services.gan.pretrained --model {a.model} --steps {{steps}} --out {a.out}"
    t0 = time.time()
    for step in range(1, a.steps + 1):
        model.train_step()
        if step % a.save_every == 0 or step == a.steps:
            _save(model, a.model, args, step, a.out, command)
            print(f"{a.model}: {step}/{a.steps} steps, {time.time() - t0:.0f} s -> {a.out}", flush=True)


if __name__ == "__main__":
    main()

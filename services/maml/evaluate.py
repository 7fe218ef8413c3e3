"""Meta-test evaluation: adapt to each task's support set, score its query set.

Every method — MAML, first-order MAML, Reptile and both baselines — is scored by the same
function on the same tasks (same seed → same task stream), so comparisons are paired.
The metric after several step counts comes out of one adaptation run (steps 1, 5, 10 are
checkpoints of one 10-step descent). Means come with a 95% confidence interval,
1.96 · s / √n over tasks.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.func import functional_call, vmap

from services.maml.maml import LossFn, Params, adapt
from services.maml.tasks import Family


@dataclasses.dataclass
class Score:
    mean: float
    ci95: float
    n: int


def summarize(values: torch.Tensor) -> Score:
    v = values.double()
    sd = float(v.std(unbiased=True)) if len(v) > 1 else 0.0
    return Score(float(v.mean()), 1.96 * sd / math.sqrt(len(v)), len(v))


def score_batch(model: nn.Module, loss_fn: LossFn, metric_fn: LossFn, params: Params, batch,
                lr: float, steps: tuple[int, ...]) -> torch.Tensor:
    """Query metric after each step count in ``steps`` (ascending) for every task: (S, T)."""

    def one(sx, sy, qx, qy):
        out, p, done = [], params, 0
        for s in steps:
            p = adapt(model, loss_fn, p, sx, sy, lr, s - done)
            done = s
            out.append(metric_fn(functional_call(model, p, (qx,)), qy))
        return torch.stack(out)

    with torch.no_grad():
        return vmap(one, randomness="different")(*batch).T.contiguous()


def evaluate(family: Family, model: nn.Module, params: Params, *, split: str, tasks: int, shots: int,
             queries: int, lr: float, steps: tuple[int, ...], seed: int, chunk: int = 100) -> dict[int, Score]:
    """{step count: Score} over ``tasks`` tasks of ``split`` drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    params = {k: v.detach() for k, v in params.items()}
    parts = []
    for start in range(0, tasks, chunk):
        batch = family.sample(split, min(chunk, tasks - start), shots, queries, gen)
        parts.append(score_batch(model, family.loss_fn, family.metric_fn, params, batch, lr, steps))
    values = torch.cat(parts, 1)  # (S, tasks)
    return {s: summarize(values[i]) for i, s in enumerate(steps)}

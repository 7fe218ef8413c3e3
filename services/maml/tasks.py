"""Task families: what a task is, which network solves it, its loss and metric.

* ``sinusoid``: regression exactly as Finn et al. 2017, §5.1 — amplitude U[0.1, 5],
  phase U[0, π], inputs U[−5, 5], K support points, an MLP 40-40 with ReLU, MSE.
  Meta-train, meta-val and meta-test tasks come from the same distribution but from
  disjoint random streams (different seeds).
* ``fewshot``: N-way K-shot classification of glyphs (``services.maml.glyphs``): classes
  and whole alphabets of meta-val and meta-test never appear in meta-training.

Every sampler returns a meta-batch ``(sx, sy, qx, qy)`` with a leading task axis T.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from services.maml.maml import LossFn, accuracy, cross_entropy, mse
from services.maml.models import ConvNet, SineMLP

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


def sample_sinusoids(tasks: int, shots: int, queries: int, gen: torch.Generator) -> Batch:
    """(sx, sy, qx, qy): (T, K, 1), (T, K, 1), (T, Q, 1), (T, Q, 1); y = A·sin(x − φ)."""
    amp = AMPLITUDE[0] + (AMPLITUDE[1] - AMPLITUDE[0]) * torch.rand(tasks, 1, 1, generator=gen)
    phase = PHASE[0] + (PHASE[1] - PHASE[0]) * torch.rand(tasks, 1, 1, generator=gen)
    x = X_RANGE[0] + (X_RANGE[1] - X_RANGE[0]) * torch.rand(tasks, shots + queries, 1, generator=gen)
    y = amp * torch.sin(x - phase)
    return x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:]


@dataclasses.dataclass
class Family:
    """One task family: network, loss, metric and a sampler per split."""

    name: str
    metric: str  # "mse" or "accuracy"
    higher_is_better: bool
    make_model: Callable[[], nn.Module]
    loss_fn: LossFn
    metric_fn: LossFn
    # sample(split, tasks, shots, queries, gen) -> Batch
    sample: Callable[[str, int, int, int, torch.Generator], Batch]
    data: object | None = None  # the GlyphSet (the joint-training baseline pretrains on its classes)

    def better(self, a: float, b: float) -> bool:
        """Is metric value a better than b?"""
        return a > b if self.higher_is_better else a < b


def sinusoid_family(hidden: int = 40) -> Family:
    def sample(split: str, tasks: int, shots: int, queries: int, gen: torch.Generator) -> Batch:
        return sample_sinusoids(tasks, shots, queries, gen)

    return Family("sinusoid", "mse", False, lambda: SineMLP(hidden), mse, mse, sample)


def fewshot_family(ways: int, channels: int = 32, cache_dir: str | None = None, distort: bool = True) -> Family:
    from services.maml import glyphs

    gs = glyphs.load(cache_dir)
    samplers: dict[tuple[str, int, int], glyphs.FewShotSampler] = {}

    def sample(split: str, tasks: int, shots: int, queries: int, gen: torch.Generator) -> Batch:
        key = (split, shots, queries)
        if key not in samplers:
            samplers[key] = glyphs.FewShotSampler(gs, split, ways, shots, queries, distort)
        return samplers[key].sample(tasks, gen)

    return Family("fewshot", "accuracy", True, lambda: ConvNet(ways, channels), cross_entropy, accuracy, sample,
                  data=gs)

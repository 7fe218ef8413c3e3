"""The two networks of Finn et al. 2017, written as plain ``nn.Module``s.

The meta-learners never call them directly: they run them with
``torch.func.functional_call(model, params, x)`` so that adapted weights θ′ are just
another dict of tensors. Batch norm keeps no running statistics (it always normalises
with the statistics of the batch it sees, as in the MAML reference code), so the
networks stay pure functions of (params, x) and compose with ``grad`` and ``vmap``.
"""

from __future__ import annotations

import torch
from torch import nn


class SineMLP(nn.Module):
    """Sinusoid regressor: 1 → 40 → 40 → 1 with ReLU (Finn et al. 2017, §5.1)."""

    def __init__(self, hidden: int = 40):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1) -> (B, 1)
        return self.net(x)


class BatchStatNorm2d(nn.Module):
    """Batch norm that always normalises with the statistics of the batch it sees, written
    with elementary ops.

    Same numbers as ``nn.BatchNorm2d(c, track_running_stats=False)``, but torch's fused
    batch-norm kernel gives wrong second-order MAML gradients under ``vmap`` (torch 2.13;
    functorch issue #534: its backward batching rule), which
    tests/maml/test_metagrad.py catches. Built from means and variances, every
    transform composes correctly.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
        var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3×3 conv (stride 2, as MAML uses for Omniglot) → batch norm (batch statistics) → ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), BatchStatNorm2d(c_out), nn.ReLU())


class ConvNet(nn.Module):
    """N-way glyph classifier: 4 conv blocks, 28×28 → 14 → 7 → 4 → 2, then a linear head."""

    def __init__(self, ways: int, channels: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            conv_block(1, channels), conv_block(channels, channels),
            conv_block(channels, channels), conv_block(channels, channels),
        )
        self.head = nn.Linear(channels * 2 * 2, ways)

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, C*4)
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, ways)
        return self.head(self.embed(x))


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters as a dict of tensors (what functional_call takes)."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}

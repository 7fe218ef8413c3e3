"""Graph convolution in plain torch, from the general weighted sum to Kipf & Welling's GCN.

Every graph convolution here is one weighted sum over neighbours,

    y_m = Σ_n f(n) · g(m, n),

with a different choice of weights g:

* ``WeightedSumConv``: g(m, n) = w[m − n] on a 1-D signal — the ordinary convolution is the
  special case where the "graph" is a path and the weight depends on the offset only.
  f = (0, 2, 4, 6, 8), w = {1: 1, 0: 3, −1: 5} gives y = (–, 26, 44, 62, –).
* spatial mean aggregation (``MeanAggConv``): g(m, n) = 1 / |N(m) ∪ {m}| for n in N(m) ∪ {m};
  a node with two neighbours averages three values with weights 1/3, e.g.
  (93.8 + 102.4 + 96.7) / 3 = 97.6(3).
* spectral GCN (``GCNConv``): g = Â = D^-1/2 (A + I) D^-1/2, the first-order approximation of a
  spectral filter on the graph Laplacian (Kipf & Welling 2017), followed by a linear map W.

Graphs are ``edge_index`` tensors (2, E) of directed edges (both directions for undirected
graphs); propagation matrices are ``torch.sparse_coo`` (N, N) so 100k-node graphs fit on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class WeightedSumConv(nn.Module):
    """1-D convolution written as the weighted sum y_m = Σ_n f(n)·g(m, n) with g(m, n) = w[m − n].

    ``weights`` maps the offset m − n to its weight. An output whose neighbourhood runs past the
    ends of the signal is undefined ("valid" convolution): it comes out as NaN.
    """

    def __init__(self, weights: dict[int, float]):
        super().__init__()
        self.offsets = sorted(weights)
        self.register_buffer("w", torch.tensor([float(weights[o]) for o in self.offsets], dtype=torch.float64))

    def matrix(self, n: int) -> torch.Tensor:
        """The (n, n) weight matrix G with G[m, n'] = g(m, n') (zero where m − n' has no weight)."""
        g = torch.zeros(n, n, dtype=self.w.dtype)
        for o, w in zip(self.offsets, self.w, strict=True):
            idx = torch.arange(n)
            src = idx - o                                                          # n' = m − offset
            ok = (src >= 0) & (src < n)
            g[idx[ok], src[ok]] = w
        return g

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        n = f.shape[-1]
        y = f.to(self.w.dtype) @ self.matrix(n).T                                  # (..., n)
        lo, hi = max(self.offsets), -min(self.offsets)                             # m needs m − o in [0, n)
        y[..., : max(lo, 0)] = math.nan
        if hi > 0:
            y[..., n - hi:] = math.nan
        return y


def add_self_loops(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    loops = torch.arange(n).repeat(2, 1)
    keep = edge_index[0] != edge_index[1]
    return torch.cat([edge_index[:, keep], loops], dim=1)


def _coalesced(edge_index: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    return torch.sparse_coo_tensor(edge_index, values, (n, n), check_invariants=False).coalesce()


def gcn_norm(edge_index: torch.Tensor, n: int, dtype=torch.float32) -> torch.Tensor:
    """Â = D^-1/2 (A + I) D^-1/2 as a sparse (N, N) matrix; D is the degree matrix of A + I.

    ``edge_index`` (2, E) holds (target, source) pairs; duplicate edges count once.
    """
    ei = _coalesced(add_self_loops(edge_index, n), torch.ones(edge_index.shape[1] + n, dtype=dtype), n).indices()
    deg = torch.zeros(n, dtype=dtype).index_add_(0, ei[0], torch.ones(ei.shape[1], dtype=dtype))
    dinv = deg.rsqrt()
    return torch.sparse_coo_tensor(ei, dinv[ei[0]] * dinv[ei[1]], (n, n), check_invariants=False).coalesce()


def mean_norm(edge_index: torch.Tensor, n: int, dtype=torch.float32) -> torch.Tensor:
    """Row-normalised D^-1 (A + I): each node averages itself and its neighbours (weights 1/(deg+1))."""
    ei = _coalesced(add_self_loops(edge_index, n), torch.ones(edge_index.shape[1] + n, dtype=dtype), n).indices()
    deg = torch.zeros(n, dtype=dtype).index_add_(0, ei[0], torch.ones(ei.shape[1], dtype=dtype))
    return torch.sparse_coo_tensor(ei, 1.0 / deg[ei[0]], (n, n), check_invariants=False).coalesce()


class GCNConv(nn.Module):
    """Spectral GCN layer: H' = Â H W (+ b)."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None
        nn.init.xavier_uniform_(self.linear.weight)

    def forward(self, x: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        h = torch.sparse.mm(a_hat, self.linear(x))                                 # (N, d_out)
        return h + self.bias if self.bias is not None else h


class MeanAggConv(nn.Module):
    """Spatial layer: average over the node and its neighbours, then a linear map: H' = (D^-1 (A+I) H) W."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=bias)

    def forward(self, x: torch.Tensor, a_mean: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.sparse.mm(a_mean, x))                             # (N, d_out)


class GCN(nn.Module):
    """Two graph-convolution layers (Kipf & Welling): softmax(Â ReLU(Â X W0) W1).

    ``kind="spectral"`` uses GCNConv with Â; ``kind="spatial"`` uses MeanAggConv with D^-1 (A+I).
    """

    def __init__(self, d_in: int, hidden: int, n_classes: int, dropout: float = 0.5, kind: str = "spectral"):
        super().__init__()
        layer = GCNConv if kind == "spectral" else MeanAggConv
        self.kind, self.dropout = kind, dropout
        self.conv1, self.conv2 = layer(d_in, hidden), layer(hidden, n_classes)

    def propagation(self, edge_index: torch.Tensor, n: int) -> torch.Tensor:
        return gcn_norm(edge_index, n) if self.kind == "spectral" else mean_norm(edge_index, n)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.dropout, self.training)
        h = F.relu(self.conv1(x, a))                                               # (N, hidden)
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, a)                                                    # (N, classes) logits


class MLP(nn.Module):
    """The baseline on node features alone (same sizes as the GCN, no graph)."""

    def __init__(self, d_in: int, hidden: int, n_classes: int, dropout: float = 0.5):
        super().__init__()
        self.dropout = dropout
        self.fc1, self.fc2 = nn.Linear(d_in, hidden), nn.Linear(hidden, n_classes)

    def propagation(self, edge_index: torch.Tensor, n: int) -> None:
        return None

    def forward(self, x: torch.Tensor, a=None) -> torch.Tensor:
        x = F.dropout(x, self.dropout, self.training)
        h = F.dropout(F.relu(self.fc1(x)), self.dropout, self.training)
        return self.fc2(h)

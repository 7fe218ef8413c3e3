"""Embedding network, Siamese / Triplet wrappers, contrastive and triplet losses with mining.

Both losses work on L2-normalised embeddings, so every distance lies in [0, 2].

    contrastive (Hadsell et al. 2006):  y·d² + (1 − y)·max(0, m − d)²        y = 1 for a same-class pair
    triplet (Schroff et al. 2015):      max(0, d(a, p) − d(a, n) + m)       want d(a, p) + m < d(a, n)

Batches are P×K (P classes, K images each), so every image is an anchor with K − 1 positives
and the rest negatives; the mining picks which pairs / triplets of the batch count.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Mining = Literal["batch-hard", "semi-hard", "all"]
MEAN, STD = 0.1307, 0.3081  # MNIST pixel statistics; inputs are images in [0, 1]


class EmbeddingNet(nn.Module):
    """Small CNN: 28×28 grey image in [0, 1] → unit-length embedding of ``dim`` values."""

    def __init__(self, dim: int = 64, width: int = 32):
        super().__init__()
        w = width
        self.dim, self.width = dim, width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),        # (B, 2w, 7, 7)
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # (B, 2w, 3, 3)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 9, 128), nn.ReLU(), nn.Linear(128, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)                                                    # (B, 28, 28) → (B, 1, 28, 28)
        z = self.head(self.features((x - MEAN) / STD))                            # (B, dim)
        return F.normalize(z, dim=1)


class SiameseNet(nn.Module):
    """Two branches with shared weights: the distance between the embeddings of a pair."""

    def __init__(self, embedding: EmbeddingNet):
        super().__init__()
        self.embedding = embedding

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return (self.embedding(x1) - self.embedding(x2)).norm(dim=1)              # (B,)


class TripletNet(nn.Module):
    """Three branches with shared weights: (d(a, p), d(a, n)) for anchor, positive, negative."""

    def __init__(self, embedding: EmbeddingNet):
        super().__init__()
        self.embedding = embedding

    def forward(self, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ea, ep, en = self.embedding(a), self.embedding(p), self.embedding(n)
        return (ea - ep).norm(dim=1), (ea - en).norm(dim=1)


def pairwise_distances(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between all rows of ``z`` (B, D) → (B, B); gradient-safe at 0."""
    sq = (z * z).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * z @ z.T).clamp_min(0.0)
    return (d2 + eps).sqrt() * (d2 > 0)


def contrastive_loss(d: torch.Tensor, same: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Hadsell's contrastive loss for pair distances ``d`` (N,) and ``same`` (N,) in {0, 1}."""
    same = same.float()
    return (same * d.pow(2) + (1 - same) * F.relu(margin - d).pow(2)).mean()


def triplet_loss(d_ap: torch.Tensor, d_an: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """max(0, d(a, p) − d(a, n) + margin), averaged over the triplets given."""
    return F.relu(d_ap - d_an + margin).mean()


def batch_contrastive_loss(z: torch.Tensor, y: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Contrastive loss over every pair of a batch, positives and negatives weighted equally."""
    d = pairwise_distances(z)
    same = y[:, None] == y[None, :]
    off = ~torch.eye(len(y), dtype=torch.bool, device=z.device)
    pos, neg = same & off, ~same
    lp = d[pos].pow(2).mean() if pos.any() else d.sum() * 0
    ln = F.relu(margin - d[neg]).pow(2).mean() if neg.any() else d.sum() * 0
    return lp + ln


def batch_triplet_loss(z: torch.Tensor, y: torch.Tensor, margin: float = 0.2,
                       mining: Mining = "batch-hard") -> tuple[torch.Tensor, float]:
    """Triplet loss over a P×K batch; returns (loss, fraction of active triplets).

    batch-hard (Hermans et al. 2017): per anchor, its farthest positive and closest negative.
    semi-hard (Schroff et al. 2015): every (a, p) with the closest negative farther than p
    (d(a, p) < d(a, n) < d(a, p) + margin); the hardest negative when no such one exists.
    all: every valid triplet, averaged over the active (non-zero) ones.
    """
    d = pairwise_distances(z)                                                     # (B, B)
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool, device=z.device)
    pos, neg = same & ~eye, ~same
    big = d.detach().max() + 1.0
    if mining == "batch-hard":
        d_ap = (d * pos).max(1).values                                            # (B,)
        d_an = (d + big * (~neg)).min(1).values                                   # (B,)
        losses = F.relu(d_ap - d_an + margin)
        return losses.mean(), float((losses > 0).float().mean())
    if mining == "semi-hard":
        a_idx, p_idx = pos.nonzero(as_tuple=True)                                 # every positive pair
        d_ap = d[a_idx, p_idx]                                                    # (T,)
        d_an_all = d[a_idx]                                                       # (T, B)
        valid = neg[a_idx]
        semi = valid & (d_an_all > d_ap[:, None]) & (d_an_all < d_ap[:, None] + margin)
        semi_min = (d_an_all + big * (~semi)).min(1).values
        hard_min = (d_an_all + big * (~valid)).min(1).values
        d_an = torch.where(semi.any(1), semi_min, hard_min)
        losses = F.relu(d_ap - d_an + margin)
        return losses.mean(), float((losses > 0).float().mean())
    # all valid triplets (a, p, n)
    t = d[:, :, None] - d[:, None, :] + margin                                    # (B, B, B): d(a,p) − d(a,n) + m
    valid = pos[:, :, None] & neg[:, None, :]
    losses = F.relu(t) * valid
    active = (losses > 1e-12).sum()
    return losses.sum() / active.clamp_min(1), float(active) / float(valid.sum().clamp_min(1))


def build_embedding(config: dict) -> EmbeddingNet:
    return EmbeddingNet(dim=int(config.get("dim", 64)), width=int(config.get("width", 32)))

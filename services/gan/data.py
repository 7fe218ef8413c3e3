"""Offline data for the GAN family, built deterministically from the packaged MNIST / Fashion-MNIST.

- Unconditional / conditional sets: the images in [-1, 1] (tanh range) with their labels.
- Pix2Pix pairs (paired translation): condition = the **edge map** of an image (Sobel gradient
  magnitude, normalised per image, thresholded at 0.25), target = the image itself. The edge
  map keeps the outline and loses the filled stroke interior / garment texture, so the
  generator must "paint in"; the identity baseline (output = input) is far from the target.
- CycleGAN domains (unpaired translation): A = the images as they are, B = a **bold** stylised
  variant (grey-scale dilation: 3×3 max filter, i.e. thicker strokes). Training draws A from
  the first half of the split and B from the second half (different images, no pairs); because
  the stylisation is deterministic, held-out A→B translation can still be scored against the
  true bold version of the same image.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from services.common.data import load

DATASETS = ("mnist", "fashion")


def to_tanh(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[0, 1] images (N, 28, 28) -> float tensor (N, 1, 28, 28) in [-1, 1]."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return (t * 2.0 - 1.0).unsqueeze(1)


@functools.cache
def images(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): x (N, 1, 28, 28) in [-1, 1], y (N,) int64."""
    x, y = load(dataset, split)
    return to_tanh(x), torch.as_tensor(y)


def edges(x: torch.Tensor) -> torch.Tensor:
    """Edge map of tanh-range images (N, 1, 28, 28) -> (N, 1, 28, 28) in {-1, 1}."""
    u = (x + 1.0) / 2.0
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx, gy = F.conv2d(u, kx, padding=1), F.conv2d(u, kx.transpose(2, 3), padding=1)
    mag = torch.sqrt(gx**2 + gy**2)
    mag = mag / mag.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (mag > 0.25).float() * 2.0 - 1.0


def bold(x: torch.Tensor) -> torch.Tensor:
    """The CycleGAN 'B' style: grey-scale dilation (3×3 max filter) of tanh-range images."""
    return F.max_pool2d(x, 3, stride=1, padding=1)


@functools.cache
def paired(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pix2Pix pairs (condition, target): (edge map, image), both (N, 1, 28, 28) in [-1, 1]."""
    x, _ = images(dataset, split)
    return edges(x), x


@functools.cache
def unpaired(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CycleGAN domains (A, B) from disjoint halves of the split: A plain, B bold."""
    x, _ = images(dataset, split)
    half = len(x) // 2
    return x[:half], bold(x[half:])


class Batches:
    """Endless shuffled minibatches of index tensors over ``n`` items (seeded, resumable by state)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.gen), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        self.gen.set_state(s["gen"])
        self.perm, self.pos = s["perm"], s["pos"]

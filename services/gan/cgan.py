"""Conditional GAN (Mirza & Osindero 2014): G(z | y) and D(x | y) — choose the digit.

The label enters both players: the generator sees [z, onehot(y)], the discriminator sees the
image stacked with ten constant one-hot label planes (B, 1 + 10, 28, 28), so it can reject a
well-drawn digit of the wrong class. Losses are DCGAN's BCE form (non-saturating G).
Quality: *conditional accuracy* — the project's classifier (``services.gan.quality``) reads
back the class that was asked for (100 samples per class); plus FD and IS.

    G: [z, y] (B, Z + 10) → FC → (B, 2w, 7, 7) → ConvT (B, w, 14, 14) → ConvT (B, 1, 28, 28), tanh
    D: [x, y-planes] (B, 11, 28, 28) → Conv (B, w, 14, 14) → Conv (B, 2w, 7, 7) → FC → logit
"""

from __future__ import annotations

import dataclasses
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from services.common.config import require
from services.gan import quality
from services.gan.base import GanArgs, pick_device, rng_state, seed_all, set_rng_state
from services.gan.data import Batches, images

METRIC, MODE, METRIC_LABEL = "cond_accuracy", "max", "conditional accuracy ({data})"
N_CLASSES = 10


@dataclasses.dataclass
class Args(GanArgs):
    """Train a conditional GAN."""

    d_steps: int = 1
    """k: discriminator updates per generator update."""
    g_width: int = 32
    """Base channel width w of the generator."""
    d_width: int = 32
    """Base channel width w of the discriminator."""

    def validate(self) -> None:
        super().validate()
        require(self.d_steps >= 1, f"--d-steps must be >= 1 (got {self.d_steps})")


class Generator(nn.Module):
    def __init__(self, z_dim: int, w: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(z_dim + N_CLASSES, 2 * w * 7 * 7), nn.BatchNorm1d(2 * w * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),  # (B, w, 14, 14)
            nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Tanh(),  # (B, 1, 28, 28)
        )
        self.w = w

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, F.one_hot(y, N_CLASSES).float()], 1)  # (B, Z + 10)
        return self.net(self.fc(h).view(-1, 2 * self.w, 7, 7))


class Discriminator(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1 + N_CLASSES, w, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        planes = F.one_hot(y, N_CLASSES).float()[:, :, None, None].expand(-1, -1, x.size(2), x.size(3))
        return self.net(torch.cat([x, planes], 1)).squeeze(1)  # (B,) logits


def d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))


def g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


class Model:
    def __init__(self, args: Args):
        self.args = args
        seed_all(args.seed)
        self.dev = pick_device(args.device)
        self.G = Generator(args.z_dim, args.g_width).to(self.dev)
        self.D = Discriminator(args.d_width).to(self.dev)
        betas = (args.beta1, args.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=args.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=args.lr, betas=betas)
        self.x, self.y = images(args.data, "train")
        self.batches = Batches(len(self.x), args.batch_size, args.seed)
        self.fixed_y = torch.arange(N_CLASSES).repeat_interleave(8)  # one row of 8 per class

    def train_step(self) -> dict[str, float]:
        a = self.args
        for _ in range(a.d_steps):
            idx = self.batches.next()
            real, y = self.x[idx].to(self.dev), self.y[idx].to(self.dev)
            y_fake = torch.randint(0, N_CLASSES, (a.batch_size,), device=self.dev)
            fake = self.G(torch.randn(a.batch_size, a.z_dim, device=self.dev), y_fake).detach()
            loss_d = d_loss(self.D(real, y), self.D(fake, y_fake))
            self.opt_d.zero_grad()
            loss_d.backward()
            self.opt_d.step()
        y_fake = torch.randint(0, N_CLASSES, (a.batch_size,), device=self.dev)
        loss_g = g_loss(self.D(self.G(torch.randn(a.batch_size, a.z_dim, device=self.dev), y_fake), y_fake))
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}

    @torch.no_grad()
    def generate(self, y: torch.Tensor, seed: int = 99) -> torch.Tensor:
        self.G.eval()
        z = torch.randn(len(y), self.args.z_dim, generator=torch.Generator().manual_seed(seed))
        x = self.G(z.to(self.dev), y.to(self.dev)).cpu()
        self.G.train()
        return x

    def evaluate(self) -> dict[str, float]:
        per_class = max(self.args.eval_samples // N_CLASSES, 10)
        y = torch.arange(N_CLASSES).repeat_interleave(per_class)
        fake = self.generate(y)
        d = self.args.data
        return {"cond_accuracy": quality.conditional_accuracy(d, fake, y), "fd": quality.fd(d, fake),
                "inception_score": quality.inception_score(d, fake)}

    def samples(self) -> torch.Tensor:
        return self.generate(self.fixed_y, seed=1234)

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "rng": rng_state(), "batches": self.batches.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        set_rng_state(s["rng"])
        self.batches.load_state_dict(s["batches"])


if __name__ == "__main__":
    from services.gan.train import main

    main(["--model", "cgan", *sys.argv[1:]])

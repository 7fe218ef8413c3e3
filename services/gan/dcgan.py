"""DCGAN (Radford et al. 2016) on 28×28 MNIST / Fashion-MNIST.

The minimax game  min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 − D(G(z)))]  in its
binary-cross-entropy form: D is a logistic classifier of real (label 1) vs generated
(label 0) images; G uses the non-saturating loss −log D(G(z)) (same fixed point, stronger
gradients early on). ``d_steps`` = k discriminator updates per generator update.
For a fixed G the optimal D* = p_data / (p_data + p_g), and then V = 2·JS(p_data‖p_g) − 2 log 2
(checked numerically in ``services.gan.toy``).

Networks (transposed-conv generator, strided-conv discriminator, batch norm, LeakyReLU):
    G: z (B, Z) → FC → (B, 2w, 7, 7) → ConvT → (B, w, 14, 14) → ConvT → (B, 1, 28, 28), tanh
    D: x (B, 1, 28, 28) → Conv → (B, w, 14, 14) → Conv → (B, 2w, 7, 7) → FC → logit (B,)
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

METRIC, MODE, METRIC_LABEL = "fd", "min", "FD-{data}"


@dataclasses.dataclass
class Args(GanArgs):
    """Train a DCGAN."""

    d_steps: int = 1
    """k: discriminator updates per generator update."""
    g_width: int = 32
    """Base channel width w of the generator."""
    d_width: int = 32
    """Base channel width w of the discriminator."""

    def validate(self) -> None:
        super().validate()
        require(self.d_steps >= 1, f"--d-steps must be >= 1 (got {self.d_steps})")
        require(self.g_width >= 1 and self.d_width >= 1, "--g-width and --d-width must be >= 1")


class Generator(nn.Module):
    def __init__(self, z_dim: int, w: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(z_dim, 2 * w * 7 * 7), nn.BatchNorm1d(2 * w * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),  # (B, w, 14, 14)
            nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Tanh(),  # (B, 1, 28, 28)
        )
        self.w = w

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 2 * self.w, 7, 7))  # (B, 2w, 7, 7) → image


class Discriminator(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)  # (B,) logits


def d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """−V(D, G) as BCE: real → 1, fake → 0."""
    return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))


def g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss −E log D(G(z))."""
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
        self.x, _ = images(args.data, "train")
        self.batches = Batches(len(self.x), args.batch_size, args.seed)
        self.fixed_z = torch.randn(64, args.z_dim, generator=torch.Generator().manual_seed(1234))

    def train_step(self) -> dict[str, float]:
        a = self.args
        for _ in range(a.d_steps):
            real = self.x[self.batches.next()].to(self.dev)
            fake = self.G(torch.randn(a.batch_size, a.z_dim, device=self.dev)).detach()
            loss_d = d_loss(self.D(real), self.D(fake))
            self.opt_d.zero_grad()
            loss_d.backward()
            self.opt_d.step()
        loss_g = g_loss(self.D(self.G(torch.randn(a.batch_size, a.z_dim, device=self.dev))))
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}

    @torch.no_grad()
    def generate(self, n: int, seed: int = 99) -> torch.Tensor:
        self.G.eval()
        z = torch.randn(n, self.args.z_dim, generator=torch.Generator().manual_seed(seed))
        x = self.G(z.to(self.dev)).cpu()
        self.G.train()
        return x

    def evaluate(self) -> dict[str, float]:
        fake = self.generate(self.args.eval_samples)
        return {"fd": quality.fd(self.args.data, fake), "inception_score": quality.inception_score(self.args.data, fake)}

    def samples(self) -> torch.Tensor:
        with torch.no_grad():
            self.G.eval()
            x = self.G(self.fixed_z.to(self.dev)).cpu()
            self.G.train()
        return x

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

    main(["--model", "dcgan", *sys.argv[1:]])

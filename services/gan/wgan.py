"""WGAN (Arjovsky et al. 2017, weight clipping) and WGAN-GP (Gulrajani et al. 2017, gradient penalty).

The critic f estimates the Wasserstein-1 distance  W(p_data, p_g) = sup_{‖f‖_L ≤ 1} E_data f − E_g f.
Critic loss  E_g f(x̃) − E_data f(x)  (minimised), generator loss  −E_g f(G(z)).
``n_critic`` critic updates per generator update. The Lipschitz constraint is enforced by
  - ``wgan``:    clipping every critic weight to [−c, c] after each update (c = 0.01, RMSProp),
  - ``wgan-gp``: the penalty λ·E[(‖∇_x̂ f(x̂)‖₂ − 1)²] on random interpolates x̂ between real and
                 generated images (λ = 10, Adam β = (0.5, 0.9)); no batch norm in the critic,
                 since the penalty is per sample.
``wasserstein`` (reported) = E_data f − E_g f on the last critic batch: the critic's estimate.

Networks as in DCGAN (28×28): G z → FC → (2w, 7, 7) → ConvT (w, 14, 14) → ConvT (1, 28, 28), tanh;
critic x → Conv (w, 14, 14) → Conv (2w, 7, 7) → FC → score (no sigmoid).
"""

from __future__ import annotations

import dataclasses
import sys

import torch
import torch.nn as nn

from services.common.config import require
from services.gan import quality
from services.gan.base import GanArgs, pick_device, rng_state, seed_all, set_rng_state
from services.gan.data import Batches, images

METRIC, MODE, METRIC_LABEL = "fd", "min", "FD-{data}"


@dataclasses.dataclass
class Args(GanArgs):
    """Train a WGAN with weight clipping."""

    lr: float = 5e-5
    """Learning rate (RMSProp for clipping, as in the paper)."""
    n_critic: int = 5
    """Critic updates per generator update."""
    clip: float = 0.01
    """c: critic weights are clipped to [−c, c] (wgan only)."""
    gp_lambda: float = 0.0
    """λ of the gradient penalty (0 = weight clipping, > 0 = WGAN-GP)."""
    g_width: int = 32
    """Base channel width w of the generator."""
    d_width: int = 32
    """Base channel width w of the critic."""

    def validate(self) -> None:
        super().validate()
        require(self.n_critic >= 1, f"--n-critic must be >= 1 (got {self.n_critic})")
        require(self.clip > 0, f"--clip must be > 0 (got {self.clip})")
        require(self.gp_lambda >= 0, f"--gp-lambda must be >= 0 (got {self.gp_lambda})")


@dataclasses.dataclass
class GPArgs(Args):
    """Train a WGAN-GP (gradient penalty instead of clipping)."""

    lr: float = 2e-4
    """Learning rate (Adam)."""
    beta1: float = 0.5
    """Adam β1."""
    beta2: float = 0.9
    """Adam β2."""
    gp_lambda: float = 10.0
    """λ of the gradient penalty."""

    def validate(self) -> None:
        super().validate()
        require(self.gp_lambda > 0, f"--gp-lambda must be > 0 for wgan-gp (got {self.gp_lambda})")


ARGS = {"wgan": Args, "wgan-gp": GPArgs}


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
        return self.net(self.fc(z).view(-1, 2 * self.w, 7, 7))


class Critic(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)  # (B,) scores


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(‖∇_x̂ f(x̂)‖₂ − 1)²] at x̂ = ε·real + (1 − ε)·fake, ε ~ U[0, 1] per sample."""
    eps = torch.rand(real.size(0), 1, 1, 1, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


class Model:
    def __init__(self, args: Args):
        self.args = args
        self.gp = args.gp_lambda > 0
        seed_all(args.seed)
        self.dev = pick_device(args.device)
        self.G = Generator(args.z_dim, args.g_width).to(self.dev)
        self.D = Critic(args.d_width).to(self.dev)
        if self.gp:
            betas = (args.beta1, args.beta2)
            self.opt_g = torch.optim.Adam(self.G.parameters(), lr=args.lr, betas=betas)
            self.opt_d = torch.optim.Adam(self.D.parameters(), lr=args.lr, betas=betas)
        else:
            self.opt_g = torch.optim.RMSprop(self.G.parameters(), lr=args.lr)
            self.opt_d = torch.optim.RMSprop(self.D.parameters(), lr=args.lr)
        self.x, _ = images(args.data, "train")
        self.batches = Batches(len(self.x), args.batch_size, args.seed)
        self.fixed_z = torch.randn(64, args.z_dim, generator=torch.Generator().manual_seed(1234))

    def train_step(self) -> dict[str, float]:
        a = self.args
        for _ in range(a.n_critic):
            real = self.x[self.batches.next()].to(self.dev)
            fake = self.G(torch.randn(a.batch_size, a.z_dim, device=self.dev)).detach()
            w_est = self.D(real).mean() - self.D(fake).mean()
            loss_d = -w_est
            if self.gp:
                gp = gradient_penalty(self.D, real, fake)
                loss_d = loss_d + a.gp_lambda * gp
            self.opt_d.zero_grad()
            loss_d.backward()
            self.opt_d.step()
            if not self.gp:
                with torch.no_grad():
                    for p in self.D.parameters():
                        p.clamp_(-a.clip, a.clip)
        loss_g = -self.D(self.G(torch.randn(a.batch_size, a.z_dim, device=self.dev))).mean()
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        out = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "wasserstein": w_est.item()}
        if self.gp:
            out["gradient_penalty"] = gp.item()
        return out

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

    main(["--model", "wgan-gp" if "--gp" in sys.argv else "wgan", *[a for a in sys.argv[1:] if a != "--gp"]])

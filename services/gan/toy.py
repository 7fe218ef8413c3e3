"""The theory of the GAN game, checked on a 1-D toy with two Gaussians.

p_data = N(μ_d, σ_d²); the generator is affine, G(z) = μ + σ·z with z ~ N(0, 1), so p_g = N(μ, σ²).
The discriminator is a small MLP with a sigmoid output, trained with the BCE form of
V(D, G) = E_data log D(x) + E_g log(1 − D(x)).

Goodfellow et al. 2014 show:
  1. for a fixed G the optimal discriminator is D*(x) = p_data(x) / (p_data(x) + p_g(x));
  2. then V(D*, G) = 2·JS(p_data ‖ p_g) − 2 log 2;
  3. at the global equilibrium p_g = p_data, D* ≡ 1/2 and V = −2 log 2.
``fit_discriminator`` checks (1) and (2) against closed-form densities and a numerical JS
integral; ``train_game`` checks (3) by playing the game (k D steps per G step).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LOG2 = math.log(2.0)


def normal_pdf(x: torch.Tensor, mu: float, sigma: float) -> torch.Tensor:
    return torch.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def optimal_d(x: torch.Tensor, data: tuple[float, float], gen: tuple[float, float]) -> torch.Tensor:
    """D*(x) = p_data / (p_data + p_g)."""
    pd, pg = normal_pdf(x, *data), normal_pdf(x, *gen)
    return pd / (pd + pg)


def js_divergence(p: tuple[float, float], q: tuple[float, float], n: int = 200_001) -> float:
    """JS(N(p) ‖ N(q)) by the trapezoid rule on a wide grid (natural log)."""
    lo = min(p[0] - 12 * p[1], q[0] - 12 * q[1])
    hi = max(p[0] + 12 * p[1], q[0] + 12 * q[1])
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    a, b = normal_pdf(x, *p), normal_pdf(x, *q)
    m = (a + b) / 2
    kl = lambda u: torch.where(u > 0, u * (torch.log(u + 1e-300) - torch.log(m + 1e-300)), torch.zeros_like(u))  # noqa: E731
    return float(torch.trapezoid(0.5 * kl(a) + 0.5 * kl(b), x))


class Disc(nn.Module):
    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1)).squeeze(1)  # (B,) logits


class Gen(nn.Module):
    def __init__(self, mu: float = 0.0, sigma: float = 1.0):
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(mu))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mu + self.log_sigma.exp() * z

    @property
    def params(self) -> tuple[float, float]:
        return float(self.mu.detach()), float(self.log_sigma.detach().exp())


def d_loss(D: Disc, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """−V(D, G) in BCE form."""
    lr, lf = D(real), D(fake)
    return F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr)) + F.binary_cross_entropy_with_logits(
        lf, torch.zeros_like(lf))


@torch.no_grad()
def value(D: Disc, data: tuple[float, float], gen: Gen | tuple[float, float], n: int = 200_000) -> float:
    """Monte-Carlo V(D, G) = E_data log D + E_g log(1 − D)."""
    real = data[0] + data[1] * torch.randn(n)
    fake = gen(torch.randn(n)) if isinstance(gen, Gen) else gen[0] + gen[1] * torch.randn(n)
    return float(F.logsigmoid(D(real)).mean() + F.logsigmoid(-D(fake)).mean())


def fit_discriminator(data: tuple[float, float], gen: tuple[float, float], steps: int = 1500,
                      batch: int = 512, lr: float = 5e-3, seed: int = 0) -> Disc:
    """Train D alone against a fixed generator distribution N(gen)."""
    torch.manual_seed(seed)
    D = Disc()
    opt = torch.optim.Adam(D.parameters(), lr=lr)
    for _ in range(steps):
        real = data[0] + data[1] * torch.randn(batch)
        fake = gen[0] + gen[1] * torch.randn(batch)
        loss = d_loss(D, real, fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return D


def train_game(data: tuple[float, float], steps: int = 2000, k: int = 3, batch: int = 256, lr_d: float = 2e-3,
               lr_g: float = 2e-3, seed: int = 0) -> tuple[Disc, Gen]:
    """Play the game: k D steps per G step (non-saturating G loss), from p_g = N(0, 1)."""
    torch.manual_seed(seed)
    D, G = Disc(), Gen()
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=lr_g, betas=(0.5, 0.999))
    for _ in range(steps):
        for _ in range(k):
            real = data[0] + data[1] * torch.randn(batch)
            loss = d_loss(D, real, G(torch.randn(batch)).detach())
            opt_d.zero_grad()
            loss.backward()
            opt_d.step()
        lf = D(G(torch.randn(batch)))
        loss_g = F.binary_cross_entropy_with_logits(lf, torch.ones_like(lf))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return D, G


if __name__ == "__main__":
    torch.set_num_threads(1)
    data, gen = (2.0, 0.5), (0.0, 1.0)
    D = fit_discriminator(data, gen)
    x = torch.linspace(-1.5, 3.5, 101)
    with torch.no_grad():
        err = (torch.sigmoid(D(x)) - optimal_d(x, data, gen)).abs().max()
    print(f"fixed G: max |D - D*| = {err:.4f}; V = {value(D, data, gen):.4f} vs 2JS-2log2 = "
          f"{2 * js_divergence(data, gen) - 2 * LOG2:.4f}")
    D, G = train_game(data)
    print(f"game: G = N{G.params}, V = {value(D, data, G):.4f} vs -2log2 = {-2 * LOG2:.4f}")

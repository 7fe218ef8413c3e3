"""CycleGAN (Zhu et al. 2017): unpaired translation between domains A and B.

Domains (``services.gan.data.unpaired``): A = plain images, B = a bold stylised variant
(3×3 grey-scale dilation), drawn from disjoint halves of the data — no pairs in training.
Two generators G: A→B and F: B→A, two discriminators D_A, D_B (PatchGAN), and the losses
  - least-squares adversarial (LSGAN): D minimises (D(real) − 1)² + D(fake)²; G minimises (D(G(a)) − 1)²,
  - cycle consistency  λ_cyc·(‖F(G(a)) − a‖₁ + ‖G(F(b)) − b‖₁),
  - identity           λ_id·(‖G(b) − b‖₁ + ‖F(a) − a‖₁)  (keeps a generator quiet on its own domain).
Quality on held-out test images: the cycle-reconstruction error ‖F(G(a)) − a‖₁ (the sweep
metric), and — because the stylisation is known — the A→B translation L1 against the true
bold image, next to the identity baseline (output = input).

    G/F: x (B, 1, 28, 28) → Conv (B, w, 28, 28) → Conv/2 (B, 2w, 14, 14) → 2 residual blocks
         → ConvT (B, w, 28, 28) → Conv (B, 1, 28, 28), tanh
    D:   x → (B, w, 14, 14) → (B, 2w, 7, 7) → (B, 1, 7, 7) patch scores (no sigmoid: LSGAN)
"""

from __future__ import annotations

import dataclasses
import itertools
import sys

import torch
import torch.nn as nn

from services.common.config import require
from services.gan import quality
from services.gan.base import GanArgs, pick_device, rng_state, seed_all, set_rng_state
from services.gan.data import Batches, bold, images, unpaired

METRIC, MODE, METRIC_LABEL = "cycle_l1", "min", "held-out cycle-reconstruction L1 ({data} plain↔bold)"


@dataclasses.dataclass
class Args(GanArgs):
    """Train a CycleGAN (plain ↔ bold)."""

    batch_size: int = 32
    """Minibatch size (per domain)."""
    lambda_cyc: float = 10.0
    """λ_cyc: weight of the cycle-consistency loss."""
    lambda_id: float = 5.0
    """λ_id: weight of the identity loss (the paper uses 0.5·λ_cyc)."""
    width: int = 16
    """Base channel width w of generators and discriminators."""

    def validate(self) -> None:
        super().validate()
        require(self.lambda_cyc >= 0, f"--lambda-cyc must be >= 0 (got {self.lambda_cyc})")
        require(self.lambda_id >= 0, f"--lambda-id must be >= 0 (got {self.lambda_id})")
        require(self.width >= 1, f"--width must be >= 1 (got {self.width})")


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.InstanceNorm2d(c), nn.ReLU(),
                                 nn.Conv2d(c, c, 3, 1, 1), nn.InstanceNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class Generator(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 3, 1, 1), nn.InstanceNorm2d(w), nn.ReLU(),  # (B, w, 28, 28)
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.InstanceNorm2d(2 * w), nn.ReLU(),  # (B, 2w, 14, 14)
            ResBlock(2 * w), ResBlock(2 * w),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.InstanceNorm2d(w), nn.ReLU(),  # (B, w, 28, 28)
            nn.Conv2d(w, 1, 3, 1, 1), nn.Tanh(),  # (B, 1, 28, 28)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchD(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.InstanceNorm2d(2 * w), nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
            nn.Conv2d(2 * w, 1, 3, 1, 1),  # (B, 1, 7, 7)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def lsgan_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (((d_real - 1) ** 2).mean() + (d_fake**2).mean())


def lsgan_g(d_fake: torch.Tensor) -> torch.Tensor:
    return ((d_fake - 1) ** 2).mean()


class Model:
    def __init__(self, args: Args):
        self.args = args
        seed_all(args.seed)
        w = args.width
        self.dev = pick_device(args.device)
        self.G, self.F = Generator(w).to(self.dev), Generator(w).to(self.dev)  # G: A→B, F: B→A
        self.D_A, self.D_B = PatchD(w).to(self.dev), PatchD(w).to(self.dev)
        betas = (args.beta1, args.beta2)
        self.opt_g = torch.optim.Adam(itertools.chain(self.G.parameters(), self.F.parameters()), lr=args.lr,
                                      betas=betas)
        self.opt_d = torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()), lr=args.lr,
                                      betas=betas)
        self.a, self.b = unpaired(args.data, "train")
        self.batches_a = Batches(len(self.a), args.batch_size, args.seed)
        self.batches_b = Batches(len(self.b), args.batch_size, args.seed + 1)
        xt, _ = images(args.data, "test")
        self.test_a = xt[: args.eval_samples]
        self.test_b_true = bold(self.test_a)  # the (never trained on) true B version of each test A

    def train_step(self) -> dict[str, float]:
        a = self.a[self.batches_a.next()].to(self.dev)
        b = self.b[self.batches_b.next()].to(self.dev)
        p = self.args
        fake_b, fake_a = self.G(a), self.F(b)
        adv = lsgan_g(self.D_B(fake_b)) + lsgan_g(self.D_A(fake_a))
        cyc = (self.F(fake_b) - a).abs().mean() + (self.G(fake_a) - b).abs().mean()
        idt = (self.G(b) - b).abs().mean() + (self.F(a) - a).abs().mean()
        loss_g = adv + p.lambda_cyc * cyc + p.lambda_id * idt
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        loss_d = (lsgan_d(self.D_B(b), self.D_B(fake_b.detach()))
                  + lsgan_d(self.D_A(a), self.D_A(fake_a.detach())))
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        return {"loss_d": loss_d.item(), "loss_g_adv": adv.item(), "loss_cyc": cyc.item(), "loss_id": idt.item()}

    @torch.no_grad()
    def _eval_nets(self, fn):
        for m in (self.G, self.F):
            m.eval()
        out = fn()
        for m in (self.G, self.F):
            m.train()
        return out

    def evaluate(self) -> dict[str, float]:
        def run():
            a, b = self.test_a.to(self.dev), self.test_b_true.to(self.dev)
            fake_b = self.G(a)
            return fake_b.cpu(), self.F(fake_b).cpu(), self.F(b).cpu()

        fake_b, rec_a, back_a = self._eval_nets(run)
        return {"cycle_l1": quality.l1(rec_a, self.test_a),
                "translation_l1": quality.l1(fake_b, self.test_b_true),
                "identity_translation_l1": quality.l1(self.test_a, self.test_b_true),
                "back_translation_l1": quality.l1(back_a, self.test_a)}

    def samples(self) -> torch.Tensor:
        """Rows of 8: A, G(A), F(G(A)), true bold(A) — repeated twice."""
        a = self.test_a[:16]
        fake_b, rec = self._eval_nets(lambda: (self.G(a.to(self.dev)).cpu(), self.F(self.G(a.to(self.dev))).cpu()))
        tb = self.test_b_true[:16]
        return torch.cat([t[i : i + 8] for i in (0, 8) for t in (a, fake_b, rec, tb)])

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "F": self.F.state_dict(), "D_A": self.D_A.state_dict(),
                "D_B": self.D_B.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "rng": rng_state(), "batches_a": self.batches_a.state_dict(), "batches_b": self.batches_b.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        for k in ("G", "F", "D_A", "D_B", "opt_g", "opt_d"):
            getattr(self, k).load_state_dict(s[k])
        set_rng_state(s["rng"])
        self.batches_a.load_state_dict(s["batches_a"])
        self.batches_b.load_state_dict(s["batches_b"])


if __name__ == "__main__":
    from services.gan.train import main

    main(["--model", "cyclegan", *sys.argv[1:]])

"""Pix2Pix (Isola et al. 2017): a condition image in, a translated image out.

Task (``services.gan.data.paired``): edge map → image (MNIST digits or Fashion-MNIST items).
- Generator: a small U-Net — the encoder's feature maps are concatenated onto the decoder's
  at the same resolution (skip connections), so outline positions pass straight through
  while the bottleneck decides how to fill them in.
- Discriminator: PatchGAN — it scores overlapping patches of the (condition, image) pair
  with a 7×7 grid of logits instead of one number, judging local texture.
- Loss: G minimises BCE(D(c, G(c)), 1) + λ·‖G(c) − y‖₁ (λ = 100); D the usual real/fake BCE.
Quality on held-out pairs (test split): L1 (on the [0, 1] scale) and SSIM, against the
identity baseline (output = the condition image).

    U-Net: c (B, 1, 28, 28) → e1 (B, w, 14, 14) → e2 (B, 2w, 7, 7) → b (B, 2w, 7, 7)
           → d2 = ConvT[b, e2] (B, w, 14, 14) → out = ConvT[d2, e1] (B, 1, 28, 28), tanh
    PatchGAN: [c, x] (B, 2, 28, 28) → (B, w, 14, 14) → (B, 2w, 7, 7) → (B, 1, 7, 7) logits
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
from services.gan.data import Batches, paired

METRIC, MODE, METRIC_LABEL = "l1", "min", "held-out L1 ({data} edges→image)"


@dataclasses.dataclass
class Args(GanArgs):
    """Train Pix2Pix (edge map → image)."""

    l1_lambda: float = 100.0
    """λ: weight of the L1 reconstruction term."""
    width: int = 32
    """Base channel width w of the U-Net and the PatchGAN."""

    def validate(self) -> None:
        super().validate()
        require(self.l1_lambda >= 0, f"--l1-lambda must be >= 0 (got {self.l1_lambda})")
        require(self.width >= 1, f"--width must be >= 1 (got {self.width})")


class UNet(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.e1 = nn.Sequential(nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2))  # (B, w, 14, 14)
        self.e2 = nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2))  # 7×7
        self.b = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.BatchNorm2d(2 * w), nn.ReLU())  # 7×7
        self.d2 = nn.Sequential(nn.ConvTranspose2d(4 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU())  # 14×14
        self.d1 = nn.Sequential(nn.ConvTranspose2d(2 * w, 1, 4, 2, 1), nn.Tanh())  # (B, 1, 28, 28)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        e1 = self.e1(c)
        e2 = self.e2(e1)
        d2 = self.d2(torch.cat([self.b(e2), e2], 1))  # skip: (B, 4w, 7, 7)
        return self.d1(torch.cat([d2, e1], 1))  # skip: (B, 2w, 14, 14)


class PatchGAN(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2, w, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
            nn.Conv2d(2 * w, 1, 3, 1, 1),  # (B, 1, 7, 7) patch logits
        )

    def forward(self, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([c, x], 1))


class Model:
    def __init__(self, args: Args):
        self.args = args
        seed_all(args.seed)
        self.dev = pick_device(args.device)
        self.G, self.D = UNet(args.width).to(self.dev), PatchGAN(args.width).to(self.dev)
        betas = (args.beta1, args.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=args.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=args.lr, betas=betas)
        self.c, self.x = paired(args.data, "train")
        self.c_test, self.x_test = (t[: args.eval_samples] for t in paired(args.data, "test"))
        self.batches = Batches(len(self.x), args.batch_size, args.seed)

    def train_step(self) -> dict[str, float]:
        a = self.args
        idx = self.batches.next()
        c, real = self.c[idx].to(self.dev), self.x[idx].to(self.dev)
        fake = self.G(c)
        d_real, d_fake = self.D(c, real), self.D(c, fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        d_fake = self.D(c, fake)
        adv = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
        rec = (fake - real).abs().mean()
        loss_g = adv + a.l1_lambda * rec
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        return {"loss_d": loss_d.item(), "loss_g_adv": adv.item(), "loss_g_l1": rec.item()}

    @torch.no_grad()
    def translate(self, c: torch.Tensor) -> torch.Tensor:
        self.G.eval()
        out = torch.cat([self.G(c[i : i + 500].to(self.dev)).cpu() for i in range(0, len(c), 500)])
        self.G.train()
        return out

    def evaluate(self) -> dict[str, float]:
        out = self.translate(self.c_test)
        identity = quality.l1(self.c_test, self.x_test)
        l1 = quality.l1(out, self.x_test)
        return {"l1": l1, "ssim": quality.ssim(out, self.x_test), "identity_l1": identity,
                "identity_ssim": quality.ssim(self.c_test, self.x_test), "l1_ratio": l1 / identity}

    def samples(self) -> torch.Tensor:
        """Rows of 8: condition, translation, target (repeated)."""
        c, x = self.c_test[:24], self.x_test[:24]
        out = self.translate(c)
        rows = [t[i : i + 8] for i in range(0, 24, 8) for t in (c, out, x)]
        return torch.cat(rows)

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

    main(["--model", "pix2pix", *sys.argv[1:]])

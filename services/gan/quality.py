"""Quality metrics for the GAN family, on features of a classifier the project trains itself.

- ``Classifier``: a small CNN (conv 32 → conv 64 → FC 128 → 10) trained on the same data set
  (MNIST or Fashion-MNIST train split). Its 128-d penultimate layer gives the features for
  the Fréchet distance ("FD-MNIST", "FD-Fashion"); its softmax gives the classifier-based
  Inception Score and the CGAN conditional accuracy. Nothing is downloaded: the committed
  checkpoint ``deploy/models/gan/classifier-<data>.pt`` is used when present, otherwise the
  classifier is trained (≈1 min on 2 CPU cores) and cached under ``$DOJO_CACHE``
  (default ``~/.cache/raydojo``). Rebuild the committed files with
  ``python -m services.gan.quality --data mnist --out deploy/models/gan/classifier-mnist.pt``.
- ``frechet_distance``: ‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½), with symmetric
  eigen-decompositions (no scipy).
- ``inception_score``: exp E_x[KL(p(y|x) ‖ p(y))] (1 … 10 for ten classes).
- ``ssim``: Wang et al. 2004 with an 11×11 Gaussian window (σ = 1.5) on [0, 1] images.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from services.gan.data import images

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "deploy" / "models" / "gan"


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
        )
        self.fc = nn.Linear(64 * 7 * 7, 128)
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """tanh-range images (B, 1, 28, 28) -> penultimate features (B, 128)."""
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(data: str, epochs: int = 2, seed: int = 0, batch_size: int = 128) -> tuple[Classifier, float]:
    """Train on the train split; returns (model, accuracy on the test split)."""
    torch.manual_seed(seed)
    x, y = images(data, "train")
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    xt, yt = images(data, "test")
    with torch.no_grad():
        acc = float((predict(model, xt).argmax(1) == yt).float().mean())
    return model, acc


@torch.no_grad()
def predict(model: Classifier, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def features(model: Classifier, x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    return torch.cat([model.features(x[i : i + batch]) for i in range(0, len(x), batch)]).double().numpy()


def _cache_path(data: str) -> Path:
    return Path(os.environ.get("DOJO_CACHE", Path.home() / ".cache" / "raydojo")) / "gan" / f"classifier-{data}.pt"


@functools.cache
def classifier(data: str) -> Classifier:
    """The project's classifier for ``data``: committed checkpoint, else cache, else train + cache."""
    model = Classifier()
    for path in (COMMITTED / f"classifier-{data}.pt", _cache_path(data)):
        if path.exists():
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
            return model.eval()
    model, acc = train_classifier(data)
    path = _cache_path(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": model.state_dict(), "test_accuracy": acc}, tmp)
    os.replace(tmp, path)
    return model


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D)."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    r1 = _sqrtm_psd(s1)
    cross = _sqrtm_psd(r1 @ s2 @ r1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


@functools.cache
def real_features(data: str, n: int) -> np.ndarray:
    """Classifier features of the first ``n`` test images (the FD reference set)."""
    x, _ = images(data, "test")
    return features(classifier(data), x[:n])


def fd(data: str, fake: torch.Tensor) -> float:
    """FD-MNIST / FD-Fashion of generated images (N, 1, 28, 28) against N real test images."""
    return frechet_distance(features(classifier(data), fake), real_features(data, len(fake)))


def inception_score(data: str, fake: torch.Tensor) -> float:
    p = F.softmax(predict(classifier(data), fake), dim=1).double()
    py = p.mean(0, keepdim=True)
    kl = (p * (torch.log(p + 1e-12) - torch.log(py + 1e-12))).sum(1).mean()
    return float(torch.exp(kl))


def conditional_accuracy(data: str, fake: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of generated images that the classifier assigns to the class they were asked for."""
    return float((predict(classifier(data), fake).argmax(1) == y).float().mean())


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of two batches of tanh-range images (N, 1, H, W), computed on [0, 1]."""
    a, b = (a.double() + 1) / 2, (b.double() + 1) / 2
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    w = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, 11, 11)
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    saa = F.conv2d(a * a, w) - mu_a**2
    sbb = F.conv2d(b * b, w) - mu_b**2
    sab = F.conv2d(a * b, w) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return float(s.mean())


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute error on the [0, 1] scale of two tanh-range batches."""
    return float(((a - b).abs() / 2).mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="train the FD/IS classifier and save it")
    p.add_argument("--data", choices=["mnist", "fashion"], default="mnist")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args(argv)
    model, acc = train_classifier(a.data, a.epochs)
    torch.save({"state_dict": model.state_dict(), "test_accuracy": acc,
                "command": f"python -m services.gan.quality --data {a.data} --out {a.out} --epochs {a.epochs}"}, a.out)
    print(f"{a.data}: test accuracy {acc:.4f} -> {a.out}")


if __name__ == "__main__":
    main()

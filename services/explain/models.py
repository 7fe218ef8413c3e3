"""The models to explain and their data: a global-average-pooling CNN (MNIST, Fashion-MNIST) and an
MLP on the ten "mean" features of scikit-learn's breast-cancer set.

    image  (B, 1, 28, 28) ─► conv1 ─► pool ─► conv2 ─► conv3 ─► pool ─► conv4 ─► conv5 ─► GAP ─► fc ─► logits
                                                                      last feature maps A (B, C, 7, 7)
    row    (B, 10) raw feature values ─► standardise (stored mean/std) ─► 32 ─► 32 ─► logits (B, 2)

CAM needs the GAP + single linear layer: logit_k = Σ_c w_kc · mean(A_c) + b_k, so the class map is
Σ_c w_kc · A_c. ``Bundle`` is everything one served model needs: the network, its kind, class and
feature names, and what the explainers use as "absent" (the baseline) and as reference data.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Literal

import numpy as np
import torch
from torch import nn

IMAGE_MODELS = ("mnist", "fashion")
TABULAR_MODELS = ("cancer",)
MODELS = IMAGE_MODELS + TABULAR_MODELS
MNIST_CLASSES = tuple(str(d) for d in range(10))
CANCER_FEATURES = 10  # the ten "mean ..." features of load_breast_cancer (columns 0..9)


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class GapCNN(nn.Module):
    """Small all-convolutional classifier with global average pooling (so CAM applies)."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(OrderedDict(
            conv1=conv_block(1, w), pool1=nn.MaxPool2d(2),                                      # (B, w, 14, 14)
            conv2=conv_block(w, 2 * w), conv3=conv_block(2 * w, 2 * w), pool2=nn.MaxPool2d(2),   # (B, 2w, 7, 7)
            conv4=conv_block(2 * w, 4 * w), conv5=conv_block(4 * w, 4 * w),                      # (B, 4w, 7, 7)
        ))
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)  # (B, C, 7, 7): the last feature maps
        return self.fc(a.mean(dim=(2, 3)))  # GAP -> (B, C) -> (B, K)

    def conv_layers(self) -> dict[str, nn.Module]:
        """Grad-CAM-able layers by name (each block's output, after its ReLU)."""
        return {name: m for name, m in self.features.named_children() if name.startswith("conv")}


class TabularMLP(nn.Module):
    """MLP on raw feature values; standardisation is part of the model (stored buffers)."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 32):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.net = nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)  # (B, F) -> (B, K)


@dataclasses.dataclass
class Bundle:
    """One model ready to be explained."""

    name: str
    kind: Literal["image", "tabular"]
    net: nn.Module
    classes: tuple[str, ...]
    features: tuple[str, ...] = ()  # tabular: feature names, in column order
    baseline: np.ndarray | None = None  # "absent" input: zeros (images) or the training mean (tabular)
    reference: np.ndarray | None = None  # tabular: training rows (LIME samples and discretises from them)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray | torch.Tensor, batch: int = 1024) -> np.ndarray:
        """Class probabilities for images (N, 28, 28) or rows (N, F); numpy in, numpy out."""
        t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if self.kind == "image":
            t = t.reshape(-1, 1, 28, 28)  # (N, 1, 28, 28)
        out = [torch.softmax(self.net(t[i:i + batch].to(self.device)), dim=1).cpu() for i in range(0, len(t), batch)]
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros((0, len(self.classes)))

    def state(self) -> dict:
        """What goes into the checkpoint."""
        return {"name": self.name, "kind": self.kind, "classes": list(self.classes), "features": list(self.features),
                "baseline": self.baseline, "reference": self.reference,
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}}

    @classmethod
    def from_state(cls, s: dict, device: str | torch.device = "cpu") -> Bundle:
        net = make_net(s["kind"], len(s["classes"]), len(s["features"]))
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in s["state_dict"].items()})
        net.to(device).eval()
        return cls(s["name"], s["kind"], net, tuple(s["classes"]), tuple(s["features"]), s["baseline"],
                   s["reference"])


def make_net(kind: str, num_classes: int, num_features: int = 0) -> nn.Module:
    return GapCNN(num_classes) if kind == "image" else TabularMLP(num_features, num_classes)


def class_names(name: str) -> tuple[str, ...]:
    if name == "mnist":
        return MNIST_CLASSES
    if name == "fashion":
        from services.common.data import FASHION_CLASSES

        return FASHION_CLASSES
    return tuple(str(c) for c in _cancer()[3])


def _cancer():
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = d.data[:, :CANCER_FEATURES].astype(np.float32)
    return x, d.target.astype(np.int64), tuple(d.feature_names[:CANCER_FEATURES]), tuple(d.target_names)


def tabular_data(split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Breast cancer (ten mean features): a fixed stratified 70/30 train/test split."""
    from sklearn.model_selection import train_test_split

    x, y, names, _ = _cancer()
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    return (xtr, ytr, names) if split == "train" else (xte, yte, names)


def image_data(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) float32 in [0, 1] and labels; ``name`` in IMAGE_MODELS."""
    from services.common.data import load

    return load(name, split)


def accuracy(bundle: Bundle, x: np.ndarray, y: np.ndarray) -> float:
    return float((bundle.predict_proba(x).argmax(1) == y).mean())

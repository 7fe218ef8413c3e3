"""The one explainer interface. Each method is a short file that overrides ``attribute``:

    cam.py      CAM: class-weighted sum of the last feature maps (GAP models)
    gradcam.py  Grad-CAM: gradient-weighted feature maps of any conv layer (captum's LayerGradCam)
    lime.py     LIME: weighted ridge surrogate on perturbations (superpixels / discretised features)
    shap.py     KernelSHAP: Shapley-kernel regression over coalitions (superpixels / features)

``Explainer.explain(bundle, x, targets, options)`` validates, times and calls ``attribute``, which
returns one attribution per input element: (B, 28, 28) for images, (B, F) for tabular rows.
Positive values speak for the target class. Hooks are registered by the ``capture`` context
manager so they are always removed, also when the forward pass raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from services.explain.models import Bundle

# limits on per-request knobs: (low, high); the HTTP layer reports violations as 422
LIMITS = {"samples": (16, 4096), "segments": (4, 196)}


class ExplainError(ValueError):
    """A request the explainers cannot serve (bad knob, method not applicable); the HTTP layer's 4xx."""


@dataclasses.dataclass(frozen=True)
class Options:
    """Per-request knobs (all methods accept all; each uses those it needs)."""

    samples: int = 1024  # LIME / SHAP: perturbed inputs evaluated per explanation
    seed: int = 0  # LIME / SHAP: sampling seed (same seed, same answer)
    layer: str | None = None  # Grad-CAM: conv layer name (default: the last one)
    segments: int = 40  # LIME / SHAP on images: superpixels requested from SLIC

    def validate(self) -> None:
        for key, (lo, hi) in LIMITS.items():
            v = getattr(self, key)
            if not lo <= v <= hi:
                raise ExplainError(f"{key} must be between {lo} and {hi} (got {v})")


@dataclasses.dataclass
class Explanation:
    attributions: np.ndarray  # (B, 28, 28) or (B, F)
    base_values: np.ndarray | None = None  # (B,) f(baseline) for SHAP: attributions sum to f(x) - base
    conditions: list[list[str]] | None = None  # tabular LIME: the discretised condition of each feature
    evaluations: int = 0  # model evaluations spent (perturbed inputs)
    elapsed_ms: float = 0.0


class Explainer:
    """Base class: subclasses set ``name`` and ``kinds`` and override ``attribute``."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]  # model kinds the method applies to ("image", "tabular")

    def applies_to(self, bundle: Bundle) -> bool:
        return bundle.kind in self.kinds

    def explain(self, bundle: Bundle, x: np.ndarray, targets: np.ndarray, options: Options = Options()) -> Explanation:
        """Attributions for inputs ``x`` (B, 28, 28) or (B, F) towards class ``targets`` (B,)."""
        if not self.applies_to(bundle):
            raise ExplainError(f"method {self.name!r} does not apply to {bundle.kind} model {bundle.name!r} "
                             f"(it needs a {' or '.join(self.kinds)} model)")
        options.validate()
        x = np.asarray(x, dtype=np.float32)
        targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        if len(targets) != len(x):
            raise ExplainError(f"{len(x)} inputs but {len(targets)} targets")
        t0 = time.perf_counter()
        out = self.attribute(bundle, x, targets, options)
        out.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return out

    def attribute(self, bundle: Bundle, x: np.ndarray, targets: np.ndarray, options: Options) -> Explanation:
        raise NotImplementedError


# ---- shared plumbing --------------------------------------------------------------------------------

class Captured:
    """Filled by ``capture``: the hooked module's output (and its gradient when asked)."""

    output: torch.Tensor | None = None
    grad: torch.Tensor | None = None


@contextlib.contextmanager
def capture(module: nn.Module, grad: bool = False) -> Iterator[Captured]:
    """Record ``module``'s forward output (and the gradient flowing into it); hooks always removed."""
    box = Captured()

    def on_forward(_m, _inp, out):
        box.output = out
        if grad and out.requires_grad:
            out.register_hook(lambda g: setattr(box, "grad", g))

    handle = module.register_forward_hook(on_forward)
    try:
        yield box
    finally:
        handle.remove()


def to_images(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32, device=device).reshape(-1, 1, 28, 28)  # (B, 1, 28, 28)


def upsample(maps: torch.Tensor, size: int = 28) -> np.ndarray:
    """(B, h, w) low-resolution maps -> (B, size, size), bilinear (as captum's LayerAttribution.interpolate)."""
    up = nn.functional.interpolate(maps.unsqueeze(1), size=(size, size), mode="bilinear")  # (B, 1, S, S)
    return up[:, 0].detach().cpu().numpy()


def superpixels(image: np.ndarray, n_segments: int) -> np.ndarray:
    """SLIC superpixels of one (28, 28) image in [0, 1]: integer labels 0..M-1, shape (28, 28)."""
    from skimage.segmentation import slic

    seg = slic(image.astype(np.float64), n_segments=n_segments, compactness=0.1, channel_axis=None,
               start_label=0, enforce_connectivity=True)
    _, seg = np.unique(seg, return_inverse=True)  # relabel densely
    return seg.reshape(image.shape)


def masked_value_fn(bundle: Bundle, x: np.ndarray, baseline: np.ndarray, target: int,
                    segments: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """f(z) for binary masks z (N, M): the target probability of x with the features where z = 0
    replaced by the baseline. Images: feature m = superpixel m of ``segments``; rows: column m."""

    def value(z: np.ndarray) -> np.ndarray:
        keep = z.astype(bool)
        if segments is not None:
            keep = keep[:, segments]  # (N, M) -> (N, 28, 28)
        inputs = np.where(keep, x[None], baseline[None])  # (N, 28, 28) or (N, F)
        return bundle.predict_proba(inputs)[:, target]

    return value


def weighted_ridge(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Coefficients of ridge regression y ~ z with sample weights w and an unpenalised intercept
    (what scikit-learn's ``Ridge(alpha).fit(z, y, sample_weight=w).coef_`` returns)."""
    p = w / w.sum()
    zc, yc = z - p @ z, y - p @ y  # centring on the weighted means removes the intercept
    a = zc.T @ (zc * w[:, None]) + alpha * np.eye(z.shape[1])
    return np.linalg.solve(a, zc.T @ (w * yc))

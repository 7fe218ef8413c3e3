"""LIME (Ribeiro et al. 2016): explain one prediction with a simple model fitted locally.

Draw ``samples`` perturbations z ∈ {0,1}^M of M interpretable features around x, evaluate the
model's target probability on each, and fit a weighted ridge regression f(z) ≈ b + Σ_m β_m z_m
with proximity weights π(z) = sqrt(exp(-d(z, 1)² / width²)); β are the attributions.

  images:  features = SLIC superpixels; z_m = 0 replaces superpixel m by the baseline (black);
           d = cosine distance, width 0.25 (the lime package's image defaults). Every pixel
           of superpixel m gets β_m.
  tabular: features = columns discretised into training quartiles; a perturbation draws each
           feature from the training data (its marginal), z_m = 1 when it falls in x's quartile;
           d = Euclidean distance in z, width 0.75·sqrt(M) (the lime package's tabular defaults).
           Each attribution comes with its condition, e.g. "13.4 < mean radius <= 15.8".
The first sample is x itself (z = 1). Same seed, same answer.
"""

from __future__ import annotations

import numpy as np

from services.explain.base import (
    Explainer,
    Explanation,
    Options,
    masked_value_fn,
    superpixels,
    weighted_ridge,
)
from services.explain.models import Bundle


class Quartiles:
    """Quartile discretiser fitted on reference rows (N, F)."""

    def __init__(self, reference: np.ndarray, names: tuple[str, ...]):
        self.edges = np.percentile(reference, [25, 50, 75], axis=0).T  # (F, 3)
        self.names = names

    def bins(self, rows: np.ndarray) -> np.ndarray:
        """(N, F) values -> (N, F) quartile indices 0..3."""
        return (rows[:, :, None] > self.edges[None]).sum(-1)

    def condition(self, f: int, b: int) -> str:
        e, name = self.edges[f], self.names[f]
        if b == 0:
            return f"{name} <= {e[0]:.4g}"
        if b == 3:
            return f"{name} > {e[2]:.4g}"
        return f"{e[b - 1]:.4g} < {name} <= {e[b]:.4g}"


class Lime(Explainer):
    name = "lime"
    kinds = ("image", "tabular")

    def attribute(self, bundle: Bundle, x: np.ndarray, targets: np.ndarray, options: Options) -> Explanation:
        attrs, conds = [], []
        for i, (xi, ti) in enumerate(zip(x, targets, strict=True)):
            rng = np.random.default_rng([options.seed, i])
            if bundle.kind == "image":
                attrs.append(self._image(bundle, xi, int(ti), options, rng))
            else:
                a, c = self._tabular(bundle, xi, int(ti), options, rng)
                attrs.append(a)
                conds.append(c)
        return Explanation(np.stack(attrs), conditions=conds or None, evaluations=len(x) * options.samples)

    def _image(self, bundle: Bundle, x: np.ndarray, target: int, options: Options, rng) -> np.ndarray:
        segments = superpixels(x, options.segments)  # (28, 28) labels 0..M-1
        m = int(segments.max()) + 1
        z = rng.integers(0, 2, size=(options.samples, m)).astype(np.float64)  # (N, M)
        z[0] = 1.0
        y = masked_value_fn(bundle, x, bundle.baseline, target, segments)(z)  # (N,)
        cosine = 1.0 - z.sum(1) / (np.sqrt(m) * np.sqrt(np.maximum(z.sum(1), 1e-12)))
        weights = np.sqrt(np.exp(-(cosine**2) / 0.25**2))
        coef = weighted_ridge(z, y, weights)  # (M,)
        return coef[segments].astype(np.float32)  # (28, 28)

    def _tabular(self, bundle: Bundle, x: np.ndarray, target: int, options: Options, rng):
        ref = bundle.reference  # (R, F)
        quart = Quartiles(ref, bundle.features)
        f = len(x)
        draws = ref[rng.integers(0, len(ref), size=(options.samples, f)), np.arange(f)]  # (N, F) marginals
        draws[0] = x
        z = (quart.bins(draws) == quart.bins(x[None])).astype(np.float64)  # (N, F)
        y = bundle.predict_proba(draws)[:, target]
        dist = np.sqrt(((1.0 - z) ** 2).sum(1))
        weights = np.sqrt(np.exp(-(dist**2) / (0.75 * np.sqrt(f)) ** 2))
        coef = weighted_ridge(z, y, weights)  # (F,)
        own = quart.bins(x[None])[0]
        return coef.astype(np.float32), [quart.condition(j, int(own[j])) for j in range(f)]

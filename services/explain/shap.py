"""KernelSHAP (Lundberg & Lee 2017): Shapley values as a weighted linear regression.

For M features and a value function v(S) = f(x with the features outside S set to the baseline),
the Shapley values φ solve the least-squares problem over coalitions z ∈ {0,1}^M
    min Σ_z k(z) (v(z) - v(∅) - Σ_m φ_m z_m)²   subject to Σ_m φ_m = v(all) - v(∅),
with the Shapley kernel k(z) = (M-1) / (C(M,|z|) · |z| · (M-|z|)). With all 2^M - 2 coalitions
the solution is exact. With fewer ``samples`` we enumerate whole coalition sizes while the
budget covers them (smallest and largest first, where the kernel puts its mass), then sample
the remaining sizes in complementary pairs, as the shap package does.

  tabular: features = columns, baseline = the training mean (one reference row);
  images:  features = SLIC superpixels, baseline = black; a superpixel's value is spread evenly
           over its pixels, so pixel attributions still sum to f(x) - f(baseline).
Target = the class probability; ``base_values`` = f(baseline).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from services.explain.base import Explainer, Explanation, Options, masked_value_fn, superpixels
from services.explain.models import Bundle


def coalitions(m: int, budget: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Coalitions z (N, M) in {0, 1} and their regression weights (N,), at most ``budget`` rows."""
    if m <= 20 and 2**m - 2 <= budget:  # complete enumeration: exact Shapley values
        z = np.array(list(itertools.product((0, 1), repeat=m))[1:-1], dtype=np.float64)  # (2^M - 2, M)
        s = z.sum(1).astype(int)
        return z, np.array([(m - 1) / (math.comb(m, k) * k * (m - k)) for k in s])
    sizes = list(range(1, math.ceil((m - 1) / 2) + 1))  # each size s stands for s and M - s
    paired = [s != m - s for s in sizes]
    size_weight = np.array([(m - 1) / (s * (m - s)) * (2 if p else 1) for s, p in zip(sizes, paired, strict=True)])
    size_weight /= size_weight.sum()  # share of the kernel mass per size (and its complement)
    rows, weights, left, remaining = [], [], budget, size_weight.copy()
    n_full = 0
    for i, (s, p) in enumerate(zip(sizes, paired, strict=True)):
        n_subsets = math.comb(m, s) * (2 if p else 1)
        if left * remaining[i] / n_subsets < 1 - 1e-8:
            break
        for idx in itertools.combinations(range(m), s):  # the whole size (and its complement)
            z = np.zeros(m)
            z[list(idx)] = 1
            for zz in (z, 1 - z) if p else (z,):
                rows.append(zz)
                weights.append(size_weight[i] / n_subsets)
        left -= n_subsets
        n_full += 1
        if remaining[i] < 1:
            remaining = remaining / (1 - remaining[i])
    if n_full < len(sizes) and left >= 2:
        probs = size_weight[n_full:] / size_weight[n_full:].sum()
        n_pairs = left // 2
        sampled = []
        for k in rng.choice(len(probs), size=n_pairs, p=probs):
            z = np.zeros(m)
            z[rng.choice(m, size=sizes[n_full + k], replace=False)] = 1
            sampled += [z, 1 - z]  # complementary pair (the kernel is symmetric in |z| and M-|z|)
        rows += sampled
        weights += [size_weight[n_full:].sum() / len(sampled)] * len(sampled)
    return np.array(rows), np.array(weights)


def kernel_shap(value, m: int, budget: int, rng: np.random.Generator) -> tuple[np.ndarray, float, float, int]:
    """(φ (M,), v(∅), v(all), evaluations) for a value function of coalitions ``value(z (N, M)) -> (N,)``."""
    ends = value(np.stack([np.zeros(m), np.ones(m)]))
    v0, v1 = float(ends[0]), float(ends[1])
    if m == 1:
        return np.array([v1 - v0]), v0, v1, 2
    z, w = coalitions(m, budget, rng)
    y = value(z) - v0  # (N,)
    # eliminate φ_M with the efficiency constraint: φ_M = (v1 - v0) - Σ_{m<M} φ_m
    a = z[:, :-1] - z[:, -1:]  # (N, M-1)
    b = y - z[:, -1] * (v1 - v0)
    sw = np.sqrt(w)[:, None]
    head = np.linalg.lstsq(a * sw, b * sw[:, 0], rcond=None)[0]
    return np.append(head, (v1 - v0) - head.sum()), v0, v1, len(z) + 2


class KernelShap(Explainer):
    name = "shap"
    kinds = ("image", "tabular")

    def attribute(self, bundle: Bundle, x: np.ndarray, targets: np.ndarray, options: Options) -> Explanation:
        attrs, bases, evals = [], [], 0
        for i, (xi, ti) in enumerate(zip(x, targets, strict=True)):
            rng = np.random.default_rng([options.seed, i])
            if bundle.kind == "image":
                segments = superpixels(xi, options.segments)  # (28, 28)
                m = int(segments.max()) + 1
                value = masked_value_fn(bundle, xi, bundle.baseline, int(ti), segments)
                phi, v0, _, n = kernel_shap(value, m, options.samples, rng)
                attrs.append((phi / np.bincount(segments.ravel(), minlength=m))[segments])  # (28, 28)
            else:
                value = masked_value_fn(bundle, xi, bundle.baseline, int(ti))
                phi, v0, _, n = kernel_shap(value, len(xi), options.samples, rng)
                attrs.append(phi)
            bases.append(v0)
            evals += n
        return Explanation(np.stack(attrs), base_values=np.array(bases), evaluations=evals)

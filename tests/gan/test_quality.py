"""The quality metrics against independent references."""

from __future__ import annotations

import numpy as np
import torch

from services.gan import quality
from services.gan.data import bold, edges, images, paired


def test_frechet_distance_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 4))
    b = rng.normal(1.0, 2.0, size=(20000, 4))
    # N(0, I) vs N(1, 4I): |Δμ|² + tr(I + 4I − 2·2I) = 4 + 4·1 = 8
    assert abs(quality.frechet_distance(a, b) - 8.0) < 0.3
    assert abs(quality.frechet_distance(a, a)) < 1e-6


def test_classifier_is_accurate_and_fd_separates_real_from_noise():
    x, y = images("mnist", "test")
    clf = quality.classifier("mnist")
    acc = float((quality.predict(clf, x[:2000]).argmax(1) == y[:2000]).float().mean())
    assert acc > 0.97
    real_other = images("mnist", "val")[0][:1000]
    noise = torch.rand(1000, 1, 28, 28) * 2 - 1
    fd_real, fd_noise = quality.fd("mnist", real_other), quality.fd("mnist", noise)
    assert fd_noise > 20 * fd_real, (fd_real, fd_noise)
    assert quality.inception_score("mnist", real_other) > 8.0  # ten well-separated classes
    assert quality.conditional_accuracy("mnist", real_other, images("mnist", "val")[1][:1000]) > 0.97


def test_ssim_and_l1():
    x = images("mnist", "test")[0][:50]
    assert abs(quality.ssim(x, x) - 1.0) < 1e-9 and quality.l1(x, x) == 0.0
    assert quality.ssim(x, -x) < 0.2
    assert abs(quality.l1(x, -x) - float(x.abs().mean())) < 1e-6


def test_paired_and_unpaired_sets_are_deterministic():
    c, x = paired("mnist", "test")
    assert c.shape == x.shape == (10000, 1, 28, 28)
    assert torch.equal(c, edges(x)) and set(c.unique().tolist()) == {-1.0, 1.0}
    assert quality.l1(c, x) > 0.1  # the identity baseline is far from the target
    b = bold(x[:10])
    assert (b >= x[:10]).all() and (b > x[:10]).any()  # dilation only thickens strokes

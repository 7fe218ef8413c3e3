"""The explainers against independent references: CAM and Grad-CAM from scratch, exact Shapley values
by brute force, scikit-learn's ridge, and faithfulness (deletion AUC) against random maps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from services.explain.base import ExplainError, Options, capture, weighted_ridge
from services.explain.evaluate import curves
from services.explain.explainers import METHODS
from services.explain.models import image_data, tabular_data
from services.explain.shap import coalitions, kernel_shap


@pytest.fixture(scope="module")
def digits(bundles):
    x, _ = image_data("mnist", "test")
    x = x[:16]
    return x, bundles["mnist"].predict_proba(x).argmax(1)


def brute_force_shapley(value, m: int) -> np.ndarray:
    """φ_i = Σ_{S ⊆ N \\ i} |S|! (M-|S|-1)! / M! · (v(S ∪ i) - v(S)), all 2^M coalitions evaluated once."""
    z = np.array(list(itertools.product((0, 1), repeat=m)), dtype=np.float64)  # (2^M, M)
    v = dict(zip(map(tuple, z.astype(int)), value(z), strict=True))
    phi = np.zeros(m)
    for i in range(m):
        for s in v:
            if s[i] == 0:
                k = sum(s)
                with_i = s[:i] + (1,) + s[i + 1:]
                phi[i] += math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) * (v[with_i] - v[s])
    return phi


def test_cam_is_the_class_weighted_sum_of_the_last_feature_maps(bundles, digits):
    net, (x, pred) = bundles["mnist"].net, digits
    targets = (pred + 3) % 10  # also non-predicted classes
    for t in (pred, targets):
        cam = METHODS["cam"].explain(bundles["mnist"], x, t).attributions  # (B, 28, 28)
        with torch.no_grad():
            feats = net.features(torch.from_numpy(x)[:, None])  # (B, C, 7, 7)
            w = net.fc.weight[torch.from_numpy(t)]  # (B, C)
            ref = (w[:, :, None, None] * feats).sum(1)  # (B, 7, 7)
            logits = net(torch.from_numpy(x)[:, None])
        # the GAP identity behind CAM: mean of the map + bias = the class logit
        assert torch.allclose(ref.mean((1, 2)) + net.fc.bias[torch.from_numpy(t)],
                              logits[torch.arange(len(t)), torch.from_numpy(t)], atol=1e-4)
        up = F.interpolate(ref[:, None], size=(28, 28), mode="bilinear", align_corners=False)[:, 0].numpy()
        np.testing.assert_allclose(cam, up, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", ["conv1", "conv3", "conv5"])
def test_gradcam_equals_a_from_scratch_hook_computation(bundles, digits, layer):
    bundle, (x, pred) = bundles["mnist"], digits
    net = bundle.net
    saved = {}

    def keep(_m, _i, out):
        out.retain_grad()
        saved["a"] = out

    h = dict(net.features.named_children())[layer].register_forward_hook(keep)
    try:
        logits = net(torch.from_numpy(x)[:, None].requires_grad_(False))
        logits[torch.arange(len(x)), torch.from_numpy(pred)].sum().backward()
    finally:
        h.remove()
        net.zero_grad(set_to_none=True)
    a, g = saved["a"].detach(), saved["a"].grad  # (B, C, h, w)
    ref = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))  # (B, h, w)
    ref = F.interpolate(ref[:, None], size=(28, 28), mode="bilinear", align_corners=False)[:, 0].numpy()
    got = METHODS["gradcam"].explain(bundle, x, pred, Options(layer=layer)).attributions
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * float(np.abs(ref).max()))
    assert np.abs(ref).max() > 0


def test_gradcam_at_the_last_layer_is_relu_cam_over_its_area(bundles, digits):
    """With GAP + one linear layer the gradient is w_kc / (h·w) everywhere: Grad-CAM = ReLU(CAM) / 49."""
    (x, pred), b = digits, bundles["mnist"]
    x, t = np.concatenate([x, x]), np.concatenate([pred, (pred + 3) % 10])  # predicted and other classes
    cam = METHODS["cam"].explain(b, x, t).attributions
    gc = METHODS["gradcam"].explain(b, x, t).attributions
    assert not np.allclose(cam, np.maximum(cam, 0))  # CAM has negative evidence, Grad-CAM drops it
    # ReLU and bilinear upsampling do not commute: compare where every low-resolution cell behind a pixel
    # is positive (there the bilinear weights of a mask of those cells sum to 1)
    with torch.no_grad():
        feats = b.net.features(torch.from_numpy(x)[:, None])  # (B, C, 7, 7)
        low = (b.net.fc.weight[torch.from_numpy(t)][:, :, None, None] * feats).sum(1)  # (B, 7, 7)
    covered = F.interpolate((low > 0).float()[:, None], size=(28, 28), mode="bilinear")[:, 0].numpy() > 1 - 1e-6
    assert covered.mean() > 0.05
    np.testing.assert_allclose(gc[covered], cam[covered] / 49, rtol=1e-4, atol=1e-6)
    assert np.all(gc[~covered] >= 0)


def test_capture_removes_its_hooks_even_when_the_forward_pass_fails(bundles):
    net = bundles["mnist"].net
    with pytest.raises(RuntimeError), capture(net.features):
        net(torch.zeros(1, 3, 28, 28))  # wrong channel count
    assert not net.features._forward_hooks


def test_kernel_shap_with_all_coalitions_is_exact_on_the_tabular_model(bundles):
    b = bundles["cancer"]
    x, _, _ = tabular_data("test")
    m = len(b.features)
    assert m <= 10
    for row in x[:5]:
        target = int(b.predict_proba(row[None])[0].argmax())
        ex = METHODS["shap"].explain(b, row[None], np.array([target]), Options(samples=2**m))
        phi = ex.attributions[0]
        value = lambda z, row=row, t=target: b.predict_proba(np.where(z.astype(bool), row, b.baseline))[:, t]  # noqa: E731
        exact = brute_force_shapley(value, m)
        assert np.linalg.norm(phi - exact) <= 0.02 * np.linalg.norm(exact)
        big = np.abs(exact) > 0.05 * np.abs(exact).max()
        np.testing.assert_allclose(phi[big], exact[big], rtol=0.02)
        fx, fb = b.predict_proba(row[None])[0, target], b.predict_proba(b.baseline[None])[0, target]
        assert abs(phi.sum() - (fx - fb)) < 1e-3 and abs(ex.base_values[0] - fb) < 1e-6


def test_kernel_shap_sampling_converges_and_keeps_efficiency():
    rng = np.random.default_rng(0)
    m = 12
    w, a = rng.normal(size=(m, m)) * 0.3, rng.normal(size=m)
    value = lambda z: np.tanh(z @ a + np.einsum("ni,ij,nj->n", z, w, z))  # noqa: E731 - an interacting game
    exact = brute_force_shapley(value, m)
    errors = []
    for budget in (128, 1024, 3000):
        phi, v0, v1, n = kernel_shap(value, m, budget, np.random.default_rng(1))
        assert n <= budget + 2 and abs(phi.sum() - (v1 - v0)) < 1e-9
        errors.append(np.linalg.norm(phi - exact) / np.linalg.norm(exact))
    assert errors[-1] < 0.05 and errors[-1] < errors[0]
    z, weights = coalitions(m, 1000, np.random.default_rng(0))
    assert len(z) <= 1000 and abs(weights.sum() - 1) < 1e-9 and (z.sum(1) == 1).sum() == m  # size 1 enumerated


def test_image_shap_pixels_sum_to_the_probability_change(bundles, digits):
    (x, pred), b = digits, bundles["mnist"]
    ex = METHODS["shap"].explain(b, x[:3], pred[:3], Options(samples=256))
    fx = b.predict_proba(x[:3])[np.arange(3), pred[:3]]
    np.testing.assert_allclose(ex.attributions.reshape(3, -1).sum(1), fx - ex.base_values, atol=1e-4)


def test_weighted_ridge_matches_scikit_learn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    z, y, w = rng.integers(0, 2, (200, 7)).astype(float), rng.normal(size=200), rng.random(200)
    np.testing.assert_allclose(weighted_ridge(z, y, w, 1.0), Ridge(alpha=1.0).fit(z, y, sample_weight=w).coef_,
                               rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["lime", "shap"])
def test_sampling_methods_are_deterministic_per_seed(bundles, digits, method):
    (x, pred), b = digits, bundles["mnist"]
    e = METHODS[method]
    a1 = e.explain(b, x[:2], pred[:2], Options(samples=128, seed=7)).attributions
    a2 = e.explain(b, x[:2], pred[:2], Options(samples=128, seed=7)).attributions
    a3 = e.explain(b, x[:2], pred[:2], Options(samples=128, seed=8)).attributions
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, a3)


def test_tabular_lime_gives_the_quartile_condition_of_each_feature(bundles):
    b = bundles["cancer"]
    row = tabular_data("test")[0][0]
    ex = METHODS["lime"].explain(b, row[None], np.array([0]), Options(samples=512))
    assert ex.attributions.shape == (1, len(b.features)) and np.abs(ex.attributions).max() > 0
    conds = ex.conditions[0]
    for name, cond, value in zip(b.features, conds, row, strict=True):
        assert name in cond
        bounds = [float(t) for t in cond.replace(name, " ").replace("<=", " ").replace("<", " ").replace(">", " ").split()]
        if cond.startswith(f"{name} <="):
            assert value <= bounds[0] + 1e-3 * abs(bounds[0])
        elif cond.startswith(f"{name} >"):
            assert value > bounds[0] - 1e-3 * abs(bounds[0])
        else:
            assert bounds[0] - 1e-3 * abs(bounds[0]) < value <= bounds[1] + 1e-3 * abs(bounds[1])


def test_methods_refuse_models_they_do_not_apply_to(bundles):
    for method in ("cam", "gradcam"):
        with pytest.raises(ExplainError, match="does not apply"):
            METHODS[method].explain(bundles["cancer"], np.zeros((1, 10)), np.array([0]))
    with pytest.raises(ExplainError, match="unknown layer"):
        METHODS["gradcam"].explain(bundles["mnist"], np.zeros((1, 28, 28)), np.array([0]), Options(layer="fc"))
    with pytest.raises(ExplainError, match="samples must be between"):
        METHODS["lime"].explain(bundles["mnist"], np.zeros((1, 28, 28)), np.array([0]), Options(samples=10**6))


def test_every_method_beats_random_on_mnist_deletion_auc(bundles):
    b = bundles["mnist"]
    x, _ = image_data("mnist", "test")
    x = x[:48]
    t = b.predict_proba(x).argmax(1)
    rng = np.random.default_rng(0)
    random_del, _ = curves(b, x, t, rng.random(x.shape), 28, rng)
    for name, e in METHODS.items():
        attr = e.explain(b, x, t, Options(samples=256, seed=0)).attributions
        dele, ins = curves(b, x, t, attr, 28, rng)
        assert dele.mean() < random_del.mean(), f"{name}: deletion AUC {dele.mean():.3f} >= random {random_del.mean():.3f}"


def test_http_limits_and_method_names_match_the_explainers():
    from services.explain import serve as http
    from services.explain.base import LIMITS

    assert (http.SAMPLES, http.SEGMENTS) == (LIMITS["samples"], LIMITS["segments"])
    assert set(http.METHOD_NAMES) == set(METHODS) and Options().samples == 1024 and Options().segments == 40

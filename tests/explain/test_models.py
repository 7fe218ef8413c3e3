"""The committed checkpoint meets the issue's accuracy thresholds on the held-out test splits."""

from __future__ import annotations

import json

from services.explain.models import accuracy, image_data, tabular_data
from tests.explain.conftest import COMMITTED


def test_committed_checkpoint_is_small_and_complete(bundles):
    files = list((COMMITTED / "checkpoints").glob("ckpt-*.pt"))
    assert len(files) == 1 and files[0].stat().st_size <= 5 * 2**20
    assert set(bundles) == {"mnist", "fashion", "cancer"}
    assert len(bundles["cancer"].features) <= 10 and bundles["cancer"].features[0] == "mean radius"


def test_image_models_meet_the_accuracy_thresholds(bundles):
    reported = json.loads((COMMITTED / "result.json").read_text())
    for name, threshold in (("mnist", 0.99), ("fashion", 0.90)):
        x, y = image_data(name, "test")  # 10 000 held-out test images, never trained on
        acc = accuracy(bundles[name], x, y)
        assert acc >= threshold, f"{name}: {acc:.4f} < {threshold}"
        assert abs(acc - reported[f"{name}_test_accuracy"]) < 1e-3  # result.json tells the truth


def test_tabular_model_accuracy(bundles):
    x, y, names = tabular_data("test")
    assert names == bundles["cancer"].features
    assert accuracy(bundles["cancer"], x, y) >= 0.90

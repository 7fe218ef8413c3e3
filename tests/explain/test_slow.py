"""Quality from scratch (make test-slow): retrain with the documented command, assert the accuracies,
then evaluate the explanations on 200 test images per data set."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_dojo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(6 * 3600)]


def test_retrain_and_evaluate_from_scratch(tmp_path):
    p = run_dojo("explain", "train", "--run-dir", str(tmp_path / "explain"), timeout=4 * 3600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "explain" / "result.json").read_text())
    assert res["mnist_test_accuracy"] >= 0.99 and res["fashion_test_accuracy"] >= 0.90
    assert res["cancer_test_accuracy"] >= 0.90
    p = run_dojo("explain", "eval", "--checkpoint", str(tmp_path / "explain"), "--run-dir", str(tmp_path / "eval"),
                 timeout=4 * 3600)
    assert p.returncode == 0, p.stderr[-3000:]
    ev = json.loads((tmp_path / "eval" / "result.json").read_text())
    for ds in ("mnist", "fashion"):
        for m in ("cam", "gradcam", "lime", "shap"):
            assert ev[f"{ds}_{m}_deletion_auc"] < ev[f"{ds}_random_deletion_auc"], (ds, m)
            assert ev[f"{ds}_{m}_insertion_auc"] > ev[f"{ds}_random_insertion_auc"], (ds, m)
            assert ev[f"{ds}_{m}_passes_randomisation"] == 1, (ds, m, ev[f"{ds}_{m}_randomisation_spearman"])

"""Few-shot glyph classification: a smoke run of every algorithm, and (slow) the acceptance runs."""

from __future__ import annotations

import json

import pytest

from services.maml import train


@pytest.mark.parametrize("algo", ["maml", "fomaml", "reptile"])
def test_fewshot_smoke(tmp_path, glyph_cache, algo):
    """Every code path of the few-shot harness on a tiny budget: meta-training, validation,
    checkpoints, meta-test with the step-size search, both baselines."""
    r = train.main(["--task", "fewshot", "--algo", algo, "--ways", "3", "--shots", "1", "--queries", "2",
                    "--iterations", "16", "--val-every", "8", "--meta-batch", "2", "--val-tasks", "10",
                    "--eval-tasks", "30", "--eval-steps", "2", "--baseline-iterations", "8",
                    "--baseline-val-tasks", "10", "--channels", "8", "--threads", "1",
                    "--cache-dir", glyph_cache, "--run-dir", str(tmp_path / algo)])
    assert r["metric"] == "accuracy" and r["ways"] == 3 and r["meta_test_tasks"] == 30
    for m in ("meta_test", "joint", "transfer", "scratch"):
        assert 0.0 <= r[f"{m}_mean"] <= 1.0 and r[f"{m}_ci95"] >= 0.0
    assert r["meta_test_mean"] > 1 / 3  # above chance after 16 meta-iterations


FAST = {1: 400, 5: 300}  # meta-iterations per shot setting in make test


@pytest.mark.parametrize("shots", [1, 5])
def test_fewshot_5way_maml_and_reptile_beat_both_baselines(tmp_path, glyph_cache, shots):
    """Acceptance at make-test budget: 5-way K-shot on held-out alphabets. MAML (with the
    baselines) and Reptile (same seed, so the same tasks) each beat joint training and training
    from scratch with non-overlapping 95% CIs. The full-budget numbers (600 meta-test tasks)
    are the slow test below and docs/maml.md, "Results"."""
    common = ["--task", "fewshot", "--ways", "5", "--shots", str(shots), "--iterations", str(FAST[shots]),
              "--val-every", str(FAST[shots]), "--val-tasks", "50", "--eval-tasks", "100",
              "--baseline-iterations", "300", "--baseline-val-tasks", "20", "--threads", "1",
              "--cache-dir", glyph_cache]
    m = train.main([*common, "--algo", "maml", "--run-dir", str(tmp_path / "maml")])
    r = train.main([*common, "--algo", "reptile", "--no-baselines", "--run-dir", str(tmp_path / "reptile")])
    print(json.dumps({"shots": shots, "maml": m, "reptile": r}))
    assert m["meta_test_tasks"] == r["meta_test_tasks"] == 100
    for res in (m, r):
        assert res["meta_test_mean"] - res["meta_test_ci95"] > m["scratch_mean"] + m["scratch_ci95"], (res, m)
        assert res["meta_test_mean"] - res["meta_test_ci95"] > m["joint_mean"] + m["joint_ci95"], (res, m)


SLOW = {1: 3000, 5: 2000}  # meta-iterations per shot setting


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a 5-shot run with its baselines and 600 scored tasks takes 16-20 min (pytest's default: 900 s)
@pytest.mark.parametrize("shots", [1, 5])
@pytest.mark.parametrize("algo", ["maml", "reptile"])
def test_fewshot_5way_beats_both_baselines(tmp_path, glyph_cache, algo, shots):
    """Acceptance: 5-way K-shot on held-out alphabets, 600 meta-test tasks: the meta-learner's
    accuracy is above joint training's and scratch's (95% CIs in result.json). The stronger
    all-class transfer baseline is reported too; at this budget MAML only matches it
    (docs/maml.md, "Results"), so it is not asserted."""
    r = train.main(["--task", "fewshot", "--algo", algo, "--ways", "5", "--shots", str(shots),
                    "--iterations", str(SLOW[shots]), "--val-every", "500", "--threads", "1",
                    "--baseline-val-tasks", "100", "--cache-dir", glyph_cache, "--run-dir", str(tmp_path / "run")])
    print(json.dumps({"algo": algo, "shots": shots, **r}))  # the numbers docs/maml.md quotes (pytest -s)
    assert r["meta_test_tasks"] == 600
    assert r["meta_test_mean"] > r["scratch_mean"] + r["scratch_ci95"], r
    assert r["meta_test_mean"] > r["joint_mean"] + r["joint_ci95"], r
    assert 0.2 < r["transfer_mean"] <= 1.0

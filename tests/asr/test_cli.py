"""`dojo asr data|train|eval` end to end with tiny budgets, and their one-line errors."""

from __future__ import annotations

import json

import pytest

from services.asr import corpus
from tests.conftest import run_dojo

TINY_MODEL = ["--hidden", "16", "--channels", "4", "--layers", "1", "--batch-frames", "4000"]
RESULT_KEYS = {"wer_greedy", "wer_beam", "cer_greedy", "cer_beam", "wer_other_synth", "rtf", "n_utterances"}


def test_train_resume_eval_with_tiny_budgets(tmp_path):
    run = tmp_path / "run"
    p = run_dojo("asr", "train", "--run-dir", str(run), "--n-train", "40", "--n-val", "6", "--epochs", "1",
                 *TINY_MODEL, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    first = json.loads((run / "result.json").read_text())
    assert first["epochs"] == 1 and first["steps"] >= 1 and first["n_train"] == 40
    assert (run / "model.pt").exists() and list((run / "checkpoints").iterdir())
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert manifest["train"]["n"] == 40

    p = run_dojo("asr", "train", "--run-dir", str(run), "--n-train", "40", "--n-val", "6", "--epochs", "2", "--resume",
                 *TINY_MODEL, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    second = json.loads((run / "result.json").read_text())
    assert second["epochs"] == 2 and second["steps"] == 2 * first["steps"]
    assert "from the cache" in p.stderr  # the corpus was not rendered again

    p = run_dojo("asr", "eval", "--run-dir", str(run), "--n-test", "6", "--n-other", "3", "--rtf-utterances", "3",
                 timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((run / "result.json").read_text())
    assert RESULT_KEYS <= set(res) and res["n_utterances"] == 6 and res["n_other_synth"] == 3
    assert res["epochs"] == 2  # eval adds to the training result
    assert 0 <= res["wer_greedy"] and res["rtf"] > 0


@pytest.mark.parametrize("argv,needle", [
    (["train", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--subsample", "5"], "--subsample must be 2, 3 or 4"),
    (["train", "--gpus", "1.5"], "--gpus above 1 must be whole"),
    (["train", "--lr", "nope"], "nope"),
    (["data", "--n-train", "-1"], "--n-train must be >= 0"),
    (["eval", "--n-test", "0", "--run-dir", "x"], "--n-test must be >= 1"),
])
def test_bad_arguments_exit_2_with_one_line(argv, needle, tmp_path):
    p = run_dojo("asr", *argv, *(["--run-dir", str(tmp_path / "r")] if "--run-dir" not in argv else []), timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith(f"dojo asr {argv[0]}: error:"), p.stderr


def test_run_dir_problems_are_one_line_errors(tmp_path):
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "model.pt").write_bytes(b"x")
    p = run_dojo("asr", "train", "--run-dir", str(tmp_path / "done"), timeout=120)
    assert p.returncode == 2 and "already holds a trained model" in p.stderr
    p = run_dojo("asr", "train", "--run-dir", str(tmp_path / "new"), "--resume", timeout=120)
    assert p.returncode == 2 and "--resume: no checkpoint" in p.stderr
    p = run_dojo("asr", "eval", "--run-dir", str(tmp_path / "empty"), timeout=120)
    assert p.returncode == 2 and "holds no model.pt" in p.stderr and "dojo asr train" in p.stderr


def test_corpus_plans_are_deterministic_and_hold_voices_out():
    vs = corpus.voice_split()
    assert not set(vs["train_accents"]) & set(vs["test_accents"])
    assert not set(vs["train_variants"]) & set(vs["test_variants"])
    train = corpus.plan("train", 400, seed=3)
    assert train == corpus.plan("train", 400, seed=3) and train != corpus.plan("train", 400, seed=4)
    for u in train + corpus.plan("val", 100, seed=3):
        accent, _, variant = u.voice.partition("+")
        assert accent in vs["train_accents"] and (variant == "" or variant in vs["train_variants"])
    test = corpus.plan("test", 300, seed=3)
    counts = {c: sum(u.category == c for u in test) for c in ("unseen_accent", "unseen_variant", "unseen_both")}
    assert set(counts.values()) == {100}
    for u in test:
        accent, _, variant = u.voice.partition("+")
        assert accent in vs["test_accents"] or variant in vs["test_variants"]
    assert {u.engine for u in corpus.plan("other", 50, seed=3)} == {"flite"}


def test_rendering_is_deterministic():
    u = corpus.plan("train", 3, seed=9)[2]
    a, b = corpus.render(u), corpus.render(u)
    assert a.dtype == b.dtype and len(a) == len(b) and (a == b).all()
    assert 0.3 < len(a) / 16_000 < 8 and 0 < abs(a).max() <= 1

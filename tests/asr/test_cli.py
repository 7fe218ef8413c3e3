"""`dojo asr data|train|eval`: one-line errors, corpus plans (the commands themselves run in test_docs.py)."""

from __future__ import annotations

import numpy as np
import pytest

from services.asr import corpus
from tests.conftest import run_dojo


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


def test_rendering_is_reproducible_up_to_espeak_state():
    """The plan (text, voice, prosody, noise, room) is exact; libespeak-ng carries state from one
    synthesis to the next in a process (lengths vary by a few samples, breathy variants differ), so
    audio is reproducible in length and level, not bit for bit. Rendered features are cached per run-dir."""
    u = corpus.plan("train", 3, seed=9)[2]
    a, b = corpus.render(u), corpus.render(u)
    assert a.dtype == b.dtype and abs(len(a) - len(b)) <= 0.01 * len(a)
    assert abs(float(np.sqrt((a**2).mean()) / np.sqrt((b**2).mean())) - 1) < 0.2
    assert 0.3 < len(a) / 16_000 < 8 and 0 < abs(a).max() <= 1

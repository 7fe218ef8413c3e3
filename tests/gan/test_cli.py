"""`dojo gan train` and `dojo sweep gan` reject bad input with one line and exit 2."""

from __future__ import annotations

import pytest

from tests.conftest import run_dojo


@pytest.mark.parametrize("argv,needle", [
    (["gan", "train", "--model", "stylegan"], "unknown model 'stylegan'"),
    (["gan", "train"], "--model is required"),
    (["gan", "train", "--model", "dcgan", "--lr", "-0.1"], "--lr must be > 0"),
    (["gan", "train", "--model", "wgan-gp", "--n-critic", "0"], "--n-critic must be >= 1"),
])
def test_train_bad_config_exits_2(argv, needle, tmp_path):
    p = run_dojo(*argv, "--run-dir", str(tmp_path / "run"), timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert not (tmp_path / "run").exists()


def test_train_help_lists_model_flags():
    p = run_dojo("gan", "train", "--model", "wgan-gp", "--help", timeout=120)
    assert p.returncode == 0 and "--gp-lambda" in p.stdout and "--n-critic" in p.stdout

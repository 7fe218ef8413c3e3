"""`dojo explain` argument handling: one line naming the problem, exit 2 (in-process: no torch start-up
per case; the console script itself runs in test_docs.py)."""

from __future__ import annotations

import pytest

from services.explain import cli
from tests.conftest import run_dojo


def test_verbs_are_listed():
    p = run_dojo("explain", "--help")
    assert p.returncode == 0 and "train" in p.stdout and "eval" in p.stdout


@pytest.mark.parametrize("argv, words", [
    (["train", "--image-epochs", "0"], "--image-epochs must be >= 1"),
    (["train", "--device", "tpu"], "--device must be auto, cpu or cuda"),
    (["train", "--lr", "nan"], "--lr must be a positive number"),
    (["train", "--max-train-images", "many"], "--max-train-images"),
    (["eval", "--samples", "5"], "--samples must be in 16..4096"),
    (["eval", "--methods", "occlusion"], "occlusion"),
    (["eval", "--checkpoint", "/nonexistent/explain", "--run-dir", "RUNDIR"], "dojo explain train --run-dir"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, words):
    argv = [a.replace("RUNDIR", str(tmp_path / "out")) for a in argv]
    with pytest.raises(SystemExit) as exc:
        cli.COMMANDS[argv[0]][0](argv[1:])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert exc.value.code == 2, err
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith(f"dojo explain {argv[0]}: error:"), err

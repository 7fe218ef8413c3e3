"""docs/maml.md stays true: its metric tables come from the code, its commands parse."""

from __future__ import annotations

import pathlib
import shlex

import pytest

from services.common.config import parse
from services.common.metrics import load_all, markdown_table
from services.maml.train import TrainArgs
from services.sweeps.maml import MamlSweepArgs

DOC = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "maml.md").read_text()


@pytest.mark.parametrize("prefix", ["dojo_maml_", "dojo_sweep_"])
def test_metric_tables_are_current(prefix):
    load_all()
    assert markdown_table(prefix) in DOC


def test_documented_commands_parse():
    lines = [ln.split("#")[0].strip() for ln in DOC.splitlines() if ln.startswith(("dojo maml", "dojo sweep"))]
    assert len(lines) >= 4
    for line in lines:
        argv = shlex.split(line)
        if argv[:3] == ["dojo", "maml", "train"]:
            args = parse(TrainArgs, argv[3:], prog="dojo maml train")
            assert args.algo in ("maml", "fomaml", "reptile")
        else:
            assert argv[:3] == ["dojo", "sweep", "maml"]
            parse(MamlSweepArgs, argv[3:], prog="dojo sweep maml")

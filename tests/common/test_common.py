"""services.common: run-dirs on pyarrow filesystems, checkpoints, argument parsing, the metrics contract."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from services.common import checkpoint
from services.common import metrics as M
from services.common.config import ConfigError, parse, rebuild, require
from services.common.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("scheme", ["path", "file-uri"])
def test_rundir_roundtrip_on_local_path_and_uri(tmp_path, scheme):
    uri = str(tmp_path / "run") if scheme == "path" else f"file://{tmp_path}/run"
    rd = RunDir(uri).ensure_writable()
    rd.write_json("result.json", {"a": 1, "b": "x"})
    assert rd.read_json("result.json") == {"a": 1, "b": "x"}
    assert rd.exists("result.json") and not rd.exists("nope.json")
    assert (tmp_path / "run" / "result.json").exists()
    assert [n for n in rd.listdir() if not n.startswith(".")] == ["result.json"]


def test_rundir_errors_name_the_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        RunDir(str(tmp_path / "file" / "sub")).ensure_writable()
    with pytest.raises(ConfigError, match="--run-dir"):
        RunDir("nosuchscheme://bucket/x")


def test_checkpoints_keep_the_newest(tmp_path):
    rd = RunDir(str(tmp_path))
    for step in (5, 10, 15, 20):
        checkpoint.save(rd, step, {"w": torch.full((2,), float(step)), "step": step}, keep=2)
    assert checkpoint.list_steps(rd) == [15, 20]
    step, state = checkpoint.load_latest(rd)
    assert step == 20 and state["step"] == 20 and torch.equal(state["w"], torch.full((2,), 20.0))
    assert checkpoint.load_latest(RunDir(str(tmp_path / "empty"))) is None


@dataclasses.dataclass
class _Args:
    """Toy."""

    n: int = 1
    """A count."""
    name: str = "x"
    """A name."""

    def validate(self) -> None:
        require(self.n >= 1, f"--n must be >= 1 (got {self.n})")


def test_parse_reports_one_line_and_exit_2(capsys):
    assert parse(_Args, ["--n", "3"], prog="dojo t").n == 3
    for argv, needle in ((["--n", "zero"], "--n"), (["--n", "0"], "--n must be >= 1 (got 0)"),
                         (["--bogus"], "--bogus")):
        with pytest.raises(SystemExit) as exc:
            parse(_Args, argv, prog="dojo t")
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("dojo t: error:") and needle in err, err


def test_rebuild_rejects_unknown_keys_and_bad_values():
    assert rebuild(_Args, {"n": 4}).n == 4
    with pytest.raises(ConfigError, match="unknown config keys for _Args: typo"):
        rebuild(_Args, {"typo": 1})
    with pytest.raises(ConfigError, match="--n must be >= 1"):
        rebuild(_Args, {"n": 0})


def test_metric_definitions_follow_the_contract():
    with pytest.raises(ValueError, match="must start with 'dojo_'"):
        M.define("x_total", "counter", "d", ())
    with pytest.raises(ValueError, match="description"):
        M.define("dojo_x", "counter", "  ", ())
    with pytest.raises(ValueError, match="ASCII"):
        M.define("dojo_x", "counter", "½ loss", ())
    with pytest.raises(ValueError, match="positive boundaries"):
        M.define("dojo_x", "histogram", "d", (), boundaries=(0, 1))
    reg = M.load_all()
    assert any(n.startswith("dojo_a3c_") for n in reg)
    for spec in reg.values():
        assert spec.description.strip() and spec.description.isascii() and spec.tag_keys is not None


def test_metrics_doc_is_current():
    doc = (REPO / "docs" / "metrics.md").read_text()
    assert doc == M.render_doc(), "docs/metrics.md is stale: run `python -m services.common.metrics`"
    for spec in M.load_all().values():
        assert f"`{spec.scraped_name}`" in doc


@pytest.mark.parametrize("name, n_train", [("mnist", 50_000), ("fashion", 50_000)])
def test_packaged_datasets_load(name, n_train):
    from services.common.data import load

    x, y = load(name, "train")
    assert x.shape == (n_train, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert set(np.unique(y)) == set(range(10))
    xt, yt = load(name, "test")
    assert xt.shape == (10_000, 28, 28) and len(yt) == 10_000
    with pytest.raises(ValueError, match="split"):
        load(name, "nope")


def test_gpu_requests_a_local_ray_cannot_meet_are_refused_and_a_joined_cluster_only_warns(monkeypatch, caplog):
    from services.common.ray_utils import require_gpus

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    require_gpus("--gpus", 0.5, {"CPU": 2.0, "GPU": 1.0})  # fits
    require_gpus("--gpus", 0, {"CPU": 2.0})
    with pytest.raises(ConfigError, match=r"^--gpus 2: the Ray cluster has 1 GPUs$"):
        require_gpus("--gpus", 2, {"GPU": 1.0})
    # a joined cluster (a Ray job on KubeRay) may scale a GPU worker group up from zero: wait, don't fail
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    with caplog.at_level("WARNING"):
        require_gpus("--ps-gpus", 0.5, {"CPU": 4.0})
    assert "--ps-gpus 0.5: the Ray cluster has 0 GPUs now" in caplog.text


def test_ray_session_leaves_a_running_ray_up(ray_local):
    from services.common.ray_utils import ray_session

    cpus = ray_local.cluster_resources()["CPU"]
    with ray_session() as resources:
        assert resources["CPU"] == cpus  # the running cluster, not a new one
    assert ray_local.is_initialized() and ray_local.cluster_resources()["CPU"] == cpus


def test_progress_of_a_resumed_run_counts_only_its_own_work(caplog, monkeypatch):
    """A run resumed at 90 of 100 shows 90 done, and its rate and ETA come from what it did since."""
    import logging

    from services.common import progress

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.INFO, logger="dojo")
    with progress.Progress("job", total=100, unit="it", every_s=0.0, initial=90) as bar:
        assert bar.done == 90
        clock[0] += 5.0
        bar.update(95)
    assert "95/100 it (95.0%) 1 it/s ETA 5s" in caplog.text

"""`dojo sweep gan`: a tiny 4-trial ASHA sweep, bad configs, and kill-then-`--auto-resume`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

# tiny trials: pix2pix needs no classifier, and its held-out L1 separates learning rates quickly
TINY = ["--model", "pix2pix", "--steps-per-iter", "4", "--batch-size", "16", "--eval-samples", "100",
        "--cpus-per-trial", "0.5"]


def sweep_cmd(*argv: str) -> list[str]:
    """`dojo sweep gan` once services/sweeps/cli.py lists it, else the module itself (same main)."""
    try:
        from services.sweeps.cli import COMMANDS

        if "gan" in COMMANDS:
            return [str(Path(sys.executable).parent / "dojo"), "sweep", "gan", *argv]
    except ImportError:
        pass
    return [sys.executable, "-m", "services.sweeps.gan", *argv]


def _env(tmp: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(tmp)}
    env.pop("RAY_ADDRESS", None)
    return env


def _kill_ray_under(tmp: Path) -> None:
    """Stop only the Ray processes of this test's own temp dir."""
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(tmp) in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


@pytest.fixture
def ray_tmp():
    tmp = Path(f"/tmp/rgs{os.getpid() % 100000}")
    tmp.mkdir(exist_ok=True)
    yield tmp
    _kill_ray_under(tmp)


@pytest.mark.parametrize("argv,needle", [
    (["--model", "stylegan"], "--model"),
    (["--model", "dcgan", "--lr-min", "-0.001"], "--lr-min must be > 0"),
    (["--model", "wgan-gp", "--n-critic", "0", "3"], "--n-critic must be >= 1"),
    (["--model", "pix2pix", "--num-samples", "0"], "--num-samples must be >= 1"),
])
def test_bad_sweep_config_fails_before_any_trial(argv, needle, tmp_path):
    p = subprocess.run(sweep_cmd(*argv, "--run-dir", str(tmp_path / "s")), capture_output=True, text=True,
                       cwd=REPO, env=_env(tmp_path), timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert not (tmp_path / "s").exists()  # nothing written, no trial started


def test_asha_sweep_best_beats_worst(tmp_path, ray_tmp):
    run = tmp_path / "asha"
    p = subprocess.run(sweep_cmd(*TINY, "--scheduler", "asha", "--num-samples", "4", "--max-iters", "4",
                                 "--lr-min", "1e-5", "--lr-max", "3e-3", "--run-dir", str(run)),
                       capture_output=True, text=True, cwd=REPO, env=_env(ray_tmp), timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads((run / "result.json").read_text())
    assert r["trials"] == 4 and r["metric"] == "l1" and r["mode"] == "min"
    assert {"best_config", "best_metric", "metric_name", "trials", "wall_s"} <= set(r)
    assert r["best_metric"] < 0.85 * r["worst_metric"], r  # measurably better, not noise
    assert {"lr", "beta1", "l1_lambda"} <= set(r["best_config"])
    assert (run / "best_samples.png").read_bytes()[:4] == b"\x89PNG"


def test_killed_sweep_resumes_and_completes(tmp_path, ray_tmp):
    run = tmp_path / "resume"
    # the same command twice, as a retried RayJob runs it: --auto-resume starts afresh, then resumes
    argv = [*TINY, "--scheduler", "none", "--num-samples", "2", "--max-iters", "6", "--run-dir", str(run),
            "--auto-resume"]
    proc = subprocess.Popen(sweep_cmd(*argv), cwd=REPO, env=_env(ray_tmp), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 800
    try:  # wait until some trial has checkpointed at least once, then SIGKILL the whole sweep
        while time.time() < deadline and not list((run / "tune").glob("*/checkpoint_*")):
            assert proc.poll() is None, "sweep ended before it could be killed"
            time.sleep(1)
        assert list((run / "tune").glob("*/checkpoint_*")), "no checkpoint appeared"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _kill_ray_under(ray_tmp)
    assert not (run / "result.json").exists()
    p = subprocess.run(sweep_cmd(*argv), capture_output=True, text=True, cwd=REPO,
                       env=_env(ray_tmp), timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming the sweep" in p.stderr
    r = json.loads((run / "result.json").read_text())
    assert r["trials"] == 2 and r["trials_with_metric"] == 2
    # every trial finished all its iterations (restored trials continue from their checkpoints)
    for trial in (run / "tune").glob("*/result.json"):
        rows = [json.loads(ln) for ln in trial.read_text().splitlines() if ln.strip()]
        assert rows[-1]["iter"] == 6

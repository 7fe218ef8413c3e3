"""`dojo sweep maml`: a sweep completes, and resumes after being killed mid-way."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sweep_cmd(run_dir: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "services.sweeps.cli", "maml", "--task", "sinusoid", "--run-dir", run_dir,
            "--val-tasks", "20", *extra]


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_sweep_completes_with_asha(tmp_path):
    run_dir = str(tmp_path / "sweep")
    r = run(sweep_cmd(run_dir, "--algo", "fomaml", "--scheduler", "asha", "--num-samples", "4", "--iterations", "150",
                      "--reports", "3", "--grace-period", "1", "--reduction-factor", "2"))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.load(open(os.path.join(run_dir, "result.json")))
    assert res["trials"] == 4 and res["trials_errored"] == 0 and res["metric_name"] == "val_mse"
    assert res["mode"] == "min" and 0 < res["best_metric"] < 10
    assert set(k for k in res if k.startswith("best_config.")) == {
        "best_config.inner_lr", "best_config.inner_steps", "best_config.meta_lr", "best_config.meta_batch"}
    assert 0.003 <= res["best_config.inner_lr"] <= 0.05
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    assert cfg["scheduler"] == "asha" and cfg["num_samples"] == 4
    # Trials that ASHA let run to the end also report the meta-test mean and CI over 600 tasks.
    results = [json.loads(open(p).read().splitlines()[-1]) for p in glob.glob(f"{run_dir}/tune/*/result.json")]
    assert len(results) == 4
    finished = [x for x in results if x["meta_iteration"] == 150]
    assert finished and all(x["meta_test_tasks"] == 600 and x["meta_test_ci95"] > 0 for x in finished)
    if res["best_trial_iterations"] == 3:
        assert res["meta_test_tasks"] == 600
    # An existing sweep is not overwritten by accident.
    r = run(sweep_cmd(run_dir, "--num-samples", "1"))
    assert r.returncode == 2 and "already holds a sweep" in r.stderr


def test_sweep_resumes_after_being_killed(tmp_path):
    run_dir = str(tmp_path / "sweep")
    cmd = sweep_cmd(run_dir, "--algo", "maml", "--scheduler", "none", "--num-samples", "3", "--iterations", "400",
                    "--reports", "4", "--max-concurrent", "1")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while not glob.glob(f"{run_dir}/tune/*/checkpoint_*") and time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.5)
        assert glob.glob(f"{run_dir}/tune/*/checkpoint_*"), "no trial checkpoint within 400 s"
        time.sleep(3)  # let the experiment state catch up with the checkpoint
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()
    assert not os.path.exists(os.path.join(run_dir, "result.json"))
    r = run(sweep_cmd(run_dir, "--resume"))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.load(open(os.path.join(run_dir, "result.json")))
    assert res["resumed"] == 1 and res["trials"] == 3 and res["trials_errored"] == 0
    assert res["trials_completed"] == 3
    results = [json.loads(open(p).read().splitlines()[-1]) for p in glob.glob(f"{run_dir}/tune/*/result.json")]
    assert sorted(x["meta_iteration"] for x in results) == [400, 400, 400]
    assert all(x["meta_test_tasks"] == 600 for x in results)


@pytest.mark.parametrize("args, message", [
    (["--resume"], "no sweep to resume"),
    (["--num-samples", "0"], "--num-samples must be >= 1"),
    (["--reports", "0"], "--reports must be in"),
    (["--scheduler", "pbt"], "pbt"),
])
def test_bad_arguments_exit_2(tmp_path, args, message):
    r = run(sweep_cmd(str(tmp_path / "s"), *args), timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "dojo sweep maml: error:" in lines[0] and message in lines[0], r.stderr

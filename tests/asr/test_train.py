"""`dojo asr train` survives the death of a training process: it restarts from the newest checkpoint."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time

import psutil
import pytest
import ray

from services.asr.train import TrainArgs, process_deaths, train
from services.common import checkpoint
from services.common.rundir import RunDir
from tests.conftest import BIN, REPO


def _training_processes(root: psutil.Process | None = None) -> list[psutil.Process]:
    """The data-parallel processes torch.multiprocessing.spawn started from ``root`` (this process by default)."""
    found = []
    for p in (root or psutil.Process()).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a process may end while we look
            cmd = " ".join(p.cmdline())
            if "spawn_main" in cmd and "resource_tracker" not in cmd:
                found.append(p)
    return found


def test_a_killed_training_process_is_restarted_from_the_newest_checkpoint(ray_local, tmp_path, capfd, caplog):
    args = TrainArgs(run_dir=str(tmp_path / "run"), epochs=6, n_train=300, n_val=8, batch_frames=4000, procs=2,
                     hidden=64, proj=64, seed=3)
    args.validate()
    run, killed = RunDir(args.run_dir), {}

    def chaos():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not checkpoint.list_steps(run):
            time.sleep(0.05)
        procs = _training_processes()
        if procs:
            killed["step"] = checkpoint.list_steps(run)[-1]
            os.kill(procs[-1].pid, signal.SIGKILL)  # a real crash, as the kernel's OOM killer would do it

    th = threading.Thread(target=chaos, daemon=True)
    th.start()
    res = train(args)
    th.join(timeout=1)
    assert "step" in killed, "no training process was found to kill"
    assert res["restarts"] == 1, res
    assert res["epochs"] == 6  # the restarted run went on from its checkpoint to the end of the schedule
    steps = checkpoint.list_steps(run)
    assert steps[-1] == res["steps"] > killed["step"]
    assert run.exists("model.pt")
    assert "terminated with signal SIGKILL); restart 1 of 3 from the newest checkpoint" in caplog.text
    err = capfd.readouterr().err  # the training processes' own log
    resumed = re.search(r"resumed at epoch \d+, step (\d+)", err)
    assert resumed and int(resumed.group(1)) >= killed["step"], err[-3000:]


def test_a_process_that_dies_outright_is_a_restartable_death_but_an_exception_is_not(ray_local):
    @ray.remote(max_retries=0)
    def dies():
        os._exit(1)

    with pytest.raises(process_deaths()):  # what the --gpus Ray task's crash really raises
        ray.get(dies.remote())

    @ray.remote(max_retries=0)
    def raises():
        raise ValueError("a bug")

    with pytest.raises(ray.exceptions.RayTaskError) as err:
        ray.get(raises.remote())
    assert not isinstance(err.value, process_deaths())


def test_auto_resume_starts_afresh_then_resumes_the_same_command(ray_local, tmp_path, caplog):
    """What a retried RayJob does: the same `--auto-resume` command twice on one run-dir."""
    def args(epochs: int) -> TrainArgs:
        return TrainArgs(run_dir=str(tmp_path / "run"), epochs=epochs, n_train=40, n_val=4, batch_frames=4000,
                         procs=1, hidden=16, proj=16, channels=4, layers=1, auto_resume=True)

    first = train(args(1))
    second = train(args(2))
    assert (first["epochs"], second["epochs"]) == (1, 2) and second["steps"] > first["steps"]
    assert f"resumed at epoch 1, step {first['steps']}" in caplog.text
    # the CPU is on record: what a wall-clock budget buys depends on it
    with open("/proc/cpuinfo") as f:
        assert first["cpu"].split(" (")[0] in f.read()


def test_killing_dojo_asr_train_ends_its_training_processes_too(tmp_path):
    """A supervisor or a timeout that SIGKILLs the CLI must not leave its training processes behind as orphans that go
    on writing checkpoints and model.pt into the run-dir (they did, until each one asked the kernel for SIGKILL on
    its parent's death)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cli = subprocess.Popen([str(BIN / "dojo"), "asr", "train", "--run-dir", str(tmp_path / "run"), "--epochs", "100",
                            "--n-train", "300", "--n-val", "8", "--batch-frames", "4000", "--hidden", "64",
                            "--proj", "64"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    procs: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while len(procs) < 2 and cli.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            procs = _training_processes(psutil.Process(cli.pid))
        assert len(procs) == 2, f"expected 2 training processes under the CLI, found {len(procs)}"
        cli.kill()
        cli.wait(timeout=30)
        _, alive = psutil.wait_procs(procs, timeout=20)
        assert not alive, f"training processes outlived the killed CLI: {[p.pid for p in alive]}"
    finally:
        cli.kill()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()

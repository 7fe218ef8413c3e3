"""The chart's job path against a real local Ray, set up the way KubeRay sets up a head with token auth:
`ray job submit` of the RayJob's entrypoint (deploy/jobs/a3c.yaml, small budget) succeeds with the token
and is refused without it."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.k8s import chart_tools as ct

pytestmark = pytest.mark.k8s
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def token_head(tmp_path_factory):
    """`ray start --head` with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN, as KubeRay's authOptions inject them."""
    token = secrets.token_hex(24)
    temp = Path(f"/tmp/rdk8s-{os.getpid()}")  # short: Ray's unix sockets live under it
    home = tmp_path_factory.mktemp("home")  # no ~/.ray/auth_token from other runs
    gcs, dash = _free_port(), _free_port()
    # every port a head binds, chosen free: other Ray clusters on this machine hold the defaults (52365, 10001)
    ports = {flag: _free_port() for flag in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port", "node-manager-port", "object-manager-port")}
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base.update(PATH=f"{BIN}:{os.environ['PATH']}", HOME=str(home))
    head_env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    subprocess.run(
        [str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats",
         *(f"--{flag}={port}" for flag, port in ports.items())],
        check=True, env=head_env, capture_output=True, timeout=180,
    )
    yield {"address": f"http://127.0.0.1:{dash}", "token": token, "env": base}
    for proc in psutil.process_iter(["cmdline"]):  # stop only this cluster, never other Rays on the machine
        try:
            if any(str(temp) in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def small_budget(entrypoint: str, run_dir: Path) -> list[str]:
    """The job spec's argv with a seconds-sized budget (same flags, smaller numbers)."""
    argv = shlex.split(entrypoint)
    change = {"--max-frames": "3000", "--workers": "1"}
    argv = [change.get(argv[i - 1], a) if i else a for i, a in enumerate(argv)]
    return argv + ["--envs-per-worker", "2", "--eval-episodes", "2", "--eval-every-frames", "100000",
                   "--run-dir", str(run_dir)]


def test_job_api_needs_the_token(token_head):
    def job_list(**extra):
        env = {**token_head["env"], **extra}
        return subprocess.run([str(BIN / "ray"), "job", "list", "--address", token_head["address"]],
                              env=env, capture_output=True, text=True, timeout=120)

    no_token, wrong = job_list(), job_list(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 48)
    for p in (no_token, wrong):
        out = p.stdout + p.stderr
        assert p.returncode != 0 and ("AuthenticationError" in out or "401" in out), out[-2000:]
    ok = job_list(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token_head["token"])
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_rayjob_entrypoint_runs_with_ray_job_submit(token_head, tmp_path):
    spec = yaml.safe_load((ct.JOB_SPECS / "a3c.yaml").read_text())
    run = tmp_path / "a3c"
    env = {**token_head["env"], "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token_head["token"]}
    t0 = time.monotonic()
    for _ in range(12):  # a fresh head's dashboard agent may need a moment on a busy machine
        p = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", token_head["address"],
             "--entrypoint-num-cpus", str(spec["entrypoint_num_cpus"]), "--",
             *small_budget(spec["entrypoint"], run)],
            env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )
        out = p.stdout + p.stderr
        if "No available agent to submit job" not in out:
            break
        time.sleep(5)
    assert p.returncode == 0 and "succeeded" in out, out[-4000:]
    result = json.loads((run / "result.json").read_text())
    assert result["frames"] >= 3000 and result["workers"] == 1 and result["env"] == "CartPole-v1"
    assert json.loads((run / "config.json").read_text())["mode"] == "async"
    assert time.monotonic() - t0 < 300

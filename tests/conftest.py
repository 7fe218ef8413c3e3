"""Shared fixtures: one real local Ray per test session, and a `dojo` subprocess runner."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster (4 logical CPUs on 2 cores) shared by the session's tests."""
    import ray

    from services.common.progress import setup_logging
    from services.common.ray_utils import init_ray

    setup_logging()
    os.environ.pop("RAY_ADDRESS", None)
    init_ray(num_cpus=4)
    yield ray
    ray.shutdown()


def run_dojo(*args: str, timeout: float = 600, env: dict | None = None, cwd: Path = REPO):
    """Run the installed `dojo` console script; returns CompletedProcess (text)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if env is None or "RAY_ADDRESS" not in env:
        full_env.pop("RAY_ADDRESS", None)
    return subprocess.run([str(BIN / "dojo"), *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=cwd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """A real `ray start --head` (token auth on, metrics export port), stopped afterwards."""
    temp = Path(f"/tmp/rdj-{os.getpid()}-{int(time.time()) % 10000}")
    gcs, dash, metrics = _free_port(), _free_port(), _free_port()
    # every port a head opens, explicit: defaults (52365, 10001, ...) collide with other local Rays
    ports = {name: _free_port() for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                              "runtime-env-agent-port", "ray-client-server-port",
                                              "node-manager-port", "object-manager-port")}
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", f"--metrics-export-port={metrics}", f"--temp-dir={temp}",
         "--disable-usage-stats", *(f"--{k}={v}" for k, v in ports.items())],
        check=True, env=env, capture_output=True, timeout=120,
    )
    yield {"dashboard": f"http://127.0.0.1:{dash}", "metrics": metrics, "env": env, "gcs": f"127.0.0.1:{gcs}"}
    for proc in psutil.process_iter(["cmdline"]):  # stop only this cluster, not other Rays on the machine
        try:
            if any(str(temp) in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    shutil.rmtree(temp, ignore_errors=True)




def ray_job_submit(head: dict, entrypoint: list[str], *, wait: bool = True, timeout: float = 600,
                   cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`ray job submit` against ``head``; retries while the head's job agent is still starting."""
    env = {**head["env"], "RAY_AUTH_MODE": "token"}
    cmd = [str(BIN / "ray"), "job", "submit", "--address", head["dashboard"], "--working-dir", ".",
           *([] if wait else ["--no-wait"]), "--", *entrypoint]
    deadline = time.time() + 90
    while True:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        if p.returncode == 0 or "No available agent" not in p.stderr or time.time() > deadline:
            return p
        time.sleep(2)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where CUDA is available."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def bash_commands(text: str) -> list[str]:
    """The commands of a Markdown text's ```bash blocks: continuation lines joined, comments dropped."""
    import re

    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            line = re.split(r"\s+#\s", line)[0].strip()
            if line and not line.startswith("#"):
                cmds.append(line)
    return cmds

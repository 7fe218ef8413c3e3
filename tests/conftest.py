"""Shared fixtures: one real local Ray per test session, and a `dojo` subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    full_env.pop("RAY_ADDRESS", None) if env is None or "RAY_ADDRESS" not in env else None
    return subprocess.run([str(BIN / "dojo"), *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=cwd)

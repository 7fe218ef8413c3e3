"""The chart's paths against a real local Ray, set up the way the chart sets up a head (KubeRay's token
auth env, the API-key Secret as DOJO_SERVE_API_KEYS, DOJO_STORAGE_ROOT):

* `ray job submit` of the RayJob's entrypoint (deploy/jobs/a3c.yaml, small budget) succeeds with the
  token and the Jobs API refuses requests without it;
* `serve deploy` of deploy/serve/raydojo.yaml (what the RayService runs) answers the documented curl:
  /healthz without a key, everything else only with `X-API-Key`.
"""

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
    api_key = secrets.token_hex(20)
    head_env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                "DOJO_SERVE_API_KEYS": f"{api_key},second-key", "DOJO_STORAGE_ROOT": str(home / "storage")}
    subprocess.run(
        [str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats",
         *(f"--{flag}={port}" for flag, port in ports.items())],
        check=True, env=head_env, capture_output=True, timeout=180,
    )
    yield {"address": f"http://127.0.0.1:{dash}", "token": token, "env": base, "api_key": api_key}
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


def test_serve_config_deploys_and_answers_the_documented_curl(token_head, tmp_path):
    import httpx

    cfg = yaml.safe_load(ct.SERVE_CONFIG.read_text())
    port = _free_port()
    assert cfg["http_options"]["port"] == 8000
    cfg["http_options"]["port"] = port  # 8000 may be taken on a shared machine
    # The ingress only: each model deployment needs a trained checkpoint (their own issues test those);
    # unconfigured capabilities are not bound (services.serve.app.build_app).
    args = cfg["applications"][0]["args"]
    for key in ("asr_checkpoint", "explain_checkpoint", "embed_checkpoint"):
        args[key] = None
    cfg["applications"][0]["deployments"] = [
        d for d in cfg["applications"][0]["deployments"] if d["name"] == "DojoIngress"]
    f = tmp_path / "serve.yaml"
    f.write_text(yaml.safe_dump(cfg))
    env = {**token_head["env"], "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token_head["token"]}
    p = subprocess.run([str(BIN / "serve"), "deploy", str(f), "--address", token_head["address"]],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            r = httpx.get(f"{base}/healthz", timeout=10)
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the Serve application did not become healthy"
        time.sleep(2)
    assert r.json()["status"] == "ok"
    assert httpx.get(f"{base}/docs", timeout=10).status_code == 401
    assert httpx.get(f"{base}/docs", headers={"X-API-Key": "wrong"}, timeout=10).status_code == 401
    ok = httpx.get(f"{base}/docs", headers={"X-API-Key": token_head["api_key"]}, timeout=10)
    assert ok.status_code == 200 and "swagger" in ok.text.lower()
    assert httpx.get(f"{base}/openapi.json", headers={"X-API-Key": "second-key"}, timeout=10).status_code == 200

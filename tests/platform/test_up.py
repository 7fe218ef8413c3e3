"""`dojo up` brings the platform up on one machine and `dojo down` leaves no process behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import psutil

from services.platform.up import ray_processes
from tests.conftest import BIN, REPO, _free_port, run_dojo


def test_dojo_up_serves_trains_scrapes_and_down_cleans_up(tmp_path):
    state_dir = tmp_path / "platform"
    ports = {k: _free_port() for k in ("dashboard", "metrics", "serve", "prometheus")}
    p = run_dojo("up", "--state-dir", str(state_dir), "--dashboard-port", str(ports["dashboard"]),
                 "--metrics-port", str(ports["metrics"]), "--serve-port", str(ports["serve"]),
                 "--prometheus-port", str(ports["prometheus"]), "--job-frames", "30000", timeout=600)
    state = json.loads((state_dir / "state.json").read_text()) if (state_dir / "state.json").exists() else {}
    try:
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        serve = f"http://127.0.0.1:{ports['serve']}"
        for url in (serve, f"http://127.0.0.1:{ports['dashboard']}", f"{serve}/docs", "dojo down"):
            assert url in p.stdout, url
        assert httpx.get(f"{serve}/healthz", timeout=30).json()["status"] == "ok"
        assert httpx.get(f"{serve}/docs", timeout=30).status_code == 200
        # README's speech-to-text and Grad-CAM requests against the committed models that `dojo up` deployed
        from tests.test_readme import readme_commands

        subprocess.run(["espeak-ng", "-w", str(tmp_path / "utterance.wav"), "four two"], check=True, timeout=60)
        wanted = ("curl -s -X POST -H \"Content-Type: audio/wav\"", "curl -s -F file=@deploy/models/explain/")
        curls = [c for c in readme_commands() if c.startswith(wanted)]
        assert len(curls) == 2, curls
        for cmd in curls:
            cmd = (cmd.replace("localhost:8000", f"127.0.0.1:{ports['serve']}")
                   .replace("@deploy/", f"@{REPO}/deploy/"))
            r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=180)
            assert r.returncode == 0, (cmd, r.stderr)
            if "/v1/asr/" in cmd:
                answer = json.loads(r.stdout)
                assert answer["text"] and 0 <= answer["confidence"] <= 1, answer
        assert json.loads((tmp_path / "gradcam.json").read_text())["method"] == "gradcam"
        # the A3C job went through the Jobs API and runs (or already finished) on the cluster
        env = {"RAY_AUTH_MODE": "token", "PATH": f"{BIN}:/usr/bin:/bin"}
        status = subprocess.run([str(BIN / "ray"), "job", "status", "--address", state["dashboard"], state["job_id"]],
                                capture_output=True, text=True, env=env).stdout.lower()
        assert any(s in status for s in ("running", "succeeded", "pending")), status
        if shutil.which("prometheus"):
            prom = f"http://127.0.0.1:{ports['prometheus']}"
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    res = httpx.get(f"{prom}/api/v1/query", params={"query": 'up{job="ray"}'}, timeout=5).json()
                    if res["data"]["result"] and res["data"]["result"][0]["value"][1] == "1":
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(2)
            else:
                raise AssertionError("Prometheus never scraped Ray's metrics port")
    finally:
        d = run_dojo("down", "--state-dir", str(state_dir), timeout=120)
    assert d.returncode == 0, d.stderr
    time.sleep(2)
    leftover = [p for p in ray_processes(state["temp_dir"]) if p.is_running()]
    assert not leftover, [p.cmdline()[:2] for p in leftover]
    for pid in state["pids"]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (state_dir / "state.json").exists()
    assert run_dojo("down", "--state-dir", str(state_dir)).returncode == 2  # nothing left to stop

"""Dashboards and alerts against a real Prometheus scraping a real run.

A `ray start --head` with a metrics export port runs a short A3C job and a 2-trial GAN
sweep (through the Jobs API, as on a cluster), the Serve application answers requests, and Prometheus (Debian
package, loopback) scrapes Ray's metrics port with the labels the Helm chart attaches.
Then every dashboard panel's PromQL is evaluated through Prometheus's HTTP API: each must
be valid and return data (panels that need a GPU or DCGM: valid only).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from services.platform import dashboards, prometheus
from tests.conftest import BIN, REPO, _free_port, ray_job_submit

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus package")

VARS = {"$cluster": ".*", "$namespace": ".*", "$run": ".*", "$sweep": ".*"}


def test_dashboards_and_rules_files_are_current():
    for name, text in dashboards.rendered().items():
        assert (REPO / "deploy" / "grafana" / name).read_text() == text, "run `dojo dashboards render`"
        assert (REPO / "helm" / "raydojo" / "dashboards" / name).read_text() == text
    doc = (REPO / "docs" / "dashboards.md").read_text()
    assert doc == dashboards.panel_doc(), "run `dojo dashboards render`"
    for d in dashboards.DASHBOARDS:  # the panel list of each dashboard is in the docs
        assert all(f"| {p.title} |" in doc for p in d.panels), d.title
    for name, text in prometheus.rendered().items():
        assert (REPO / "deploy" / "prometheus" / name).read_text() == text, "run python -m services.platform.prometheus"


def test_promtool_accepts_rules_and_config():
    for args in (["check", "rules", "deploy/prometheus/rules.yml"], ["check", "config", "deploy/prometheus/prometheus.yml"]):
        p = subprocess.run(["promtool", *args], cwd=REPO, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr


def test_every_panel_names_a_documented_metric():
    from services.common.metrics import load_all

    scraped = {s.scraped_name for s in load_all().values()}
    for d in dashboards.DASHBOARDS:
        for p in d.panels:
            for t in p.targets:
                for name in {w for w in t.expr.replace("(", " ").replace("{", " ").split() if w.startswith("ray_dojo_")}:
                    base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
                    assert base in scraped, f"{d.title} / {p.title}: {name} is not in the metrics contract"


@pytest.fixture
def prom(tmp_path):
    """Start Prometheus on loopback with a generated config; yields (start function, base URL)."""
    port = _free_port()
    procs = []

    def start(targets: list[str]) -> str:
        (tmp_path / "rules.yml").write_text(prometheus.dump(prometheus.alert_rules()))
        (tmp_path / "prometheus.yml").write_text(prometheus.dump(prometheus.scrape_config(targets, interval_s=2)))
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        for _ in range(60):
            try:
                if httpx.get(f"{base}/-/ready", timeout=2).status_code == 200:
                    return base
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("prometheus did not start")

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=30)


def _query_range(base: str, expr: str, start: float) -> dict:
    r = httpx.get(f"{base}/api/v1/query_range",
                  params={"query": expr, "start": start, "end": time.time(), "step": "2s"}, timeout=30)
    return r.json()


def test_every_panel_returns_data_from_a_real_run(ray_head, prom, tmp_path):
    t0 = time.time()
    base = prom([f"127.0.0.1:{ray_head['metrics']}"])
    env = {**ray_head["env"], "RAY_AUTH_MODE": "token"}
    ray = str(BIN / "ray")
    # 1) a training job through the Jobs API, as on a cluster
    sub = ray_job_submit(ray_head, ["dojo", "a3c", "train", "--run-dir", str(tmp_path / "a3c"), "--max-frames",
                                    "120000", "--checkpoint-every", "100"], wait=False, timeout=120)
    assert sub.returncode == 0, sub.stderr[-2000:]
    # ... and a 2-trial sweep (it waits for CPUs until the A3C job is done)
    sweep = ray_job_submit(ray_head, ["dojo", "sweep", "gan", "--model", "dcgan", "--scheduler", "none",
                                      "--num-samples", "2", "--max-iters", "3", "--steps-per-iter", "5",
                                      "--eval-samples", "100", "--cpus-per-trial", "0.5",
                                      "--run-dir", str(tmp_path / "sweep")], wait=False, timeout=120)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    # 2) the Serve application (the same builder as deploy/serve), on its own port
    http_port = _free_port()
    cfg = yaml.safe_load((REPO / "deploy" / "serve" / "raydojo.yaml").read_text())
    app = cfg["applications"][0]
    # every capability with its committed model; replicas take little logical CPU so the jobs still fit
    app["args"].update(storage_root=str(REPO), asr_checkpoint="deploy/models/asr",
                       explain_checkpoint="deploy/models/explain", embed_checkpoint="deploy/models/metric/triplet-mnist")
    for d in app["deployments"]:
        d["ray_actor_options"]["num_cpus"] = 0.05
    cfg["http_options"] = {"host": "127.0.0.1", "port": http_port}
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(cfg))
    dep = subprocess.run([str(BIN / "serve"), "deploy", str(tmp_path / "serve.yaml"), "--address", ray_head["dashboard"]],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert dep.returncode == 0, dep.stdout[-2000:] + dep.stderr[-2000:]
    url = f"http://127.0.0.1:{http_port}"
    for _ in range(120):
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    for _ in range(30):
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        httpx.post(f"{url}/v1/nope", timeout=10)  # 404s feed the status panels
    # one request per model route feeds the model panels
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "five.wav"), "five two"], check=True, timeout=60)
    examples = REPO / "deploy" / "models"
    calls = [
        ("/v1/asr/transcribe", {"content": (tmp_path / "five.wav").read_bytes(),
                                "headers": {"Content-Type": "audio/wav"}}),
        ("/v1/explain/gradcam", {"files": {"file": (examples / "explain" / "examples" / "seven.png").read_bytes()}}),
        ("/v1/embed", {"content": (examples / "metric" / "examples" / "digit.json").read_bytes(),
                       "headers": {"Content-Type": "application/json"}}),
    ]
    for route, kw in calls:
        for _ in range(3):
            r = httpx.post(f"{url}{route}", timeout=120, **kw)
            assert r.status_code == 200, (route, r.text[:500])
    # 3) wait for the jobs, then let Ray export and Prometheus scrape
    for submitted in (sub, sweep):
        job_id = "raysubmit_" + submitted.stdout.split("raysubmit_")[1].split()[0].strip("'\"")
        deadline = time.time() + 600
        while time.time() < deadline:
            st = subprocess.run([ray, "job", "status", "--address", ray_head["dashboard"], job_id],
                                env=env, capture_output=True, text=True).stdout.lower()
            if "succeeded" in st or "failed" in st or "stopped" in st:
                break
            time.sleep(3)
        assert "succeeded" in st, st
    time.sleep(15)
    # 4) every panel through Prometheus's HTTP API
    empty = []
    for d in dashboards.DASHBOARDS:
        for p in d.panels:
            for t in p.targets:
                expr = t.expr
                for k, v in VARS.items():
                    expr = expr.replace(k, v)
                res = _query_range(base, expr, t0)
                assert res["status"] == "success", (d.title, p.title, res)
                if not p.needs and not any(s["values"] for s in res["data"]["result"]):
                    empty.append(f"{d.title} / {p.title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    # 5) alert expressions are valid against the same data
    for rule in prometheus.alert_rules()["groups"][0]["rules"]:
        res = _query_range(base, rule["expr"], t0)
        assert res["status"] == "success", (rule["alert"], res)
    alerts = httpx.get(f"{base}/api/v1/rules", timeout=10).json()
    assert {r["name"] for g in alerts["data"]["groups"] for r in g["rules"]} >= {"DojoA3CNoProgress"}
    json.dumps(alerts)

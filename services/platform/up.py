"""`dojo up` / `dojo down`: the whole service on one machine.

`dojo up` starts a local Ray head (token authentication on, metrics export port), deploys
the Serve application from deploy/serve/raydojo.yaml (every capability whose model exists),
submits an A3C CartPole job through the Ray Jobs API (the same path as on a cluster),
starts Prometheus from the Debian package when installed (generated scrape config + alert
rules), and prints the URLs and example commands. `dojo down` stops exactly what it
started; the state lives in ``<state-dir>/state.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from services.common.config import fail, parse, require
from services.common.progress import log, setup_logging
from services.platform import prometheus
from services.serve.app import CAPABILITIES, _installed

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVE_CONFIG = REPO / "deploy" / "serve" / "raydojo.yaml"
MODEL_DIRS = {"asr": "asr", "explain": "explain", "embed": "metric/triplet-mnist"}  # capability -> deploy/models/<dir>


@dataclasses.dataclass
class UpArgs:
    """Bring up Ray, the Serve application, an A3C job and Prometheus on this machine."""

    state_dir: str = "runs/platform"
    """Where state.json, generated configs, Prometheus data and logs go."""
    dashboard_port: int = 8265
    """Ray dashboard / Jobs API port."""
    metrics_port: int = 8080
    """Ray metrics export port (what Prometheus scrapes)."""
    serve_port: int = 8000
    """HTTP port of the Serve application."""
    prometheus_port: int = 9090
    """Prometheus port (when the Debian package is installed)."""
    job: bool = True
    """Submit the A3C CartPole job."""
    job_frames: int = 300_000
    """--max-frames of that job."""
    serve: bool = True
    """Deploy the Serve application."""
    prometheus: bool = True
    """Start Prometheus when its binary is installed."""
    num_cpus: int | None = None
    """Logical CPUs of the head (default: the machine's cores)."""

    def validate(self) -> None:
        for name in ("dashboard_port", "metrics_port", "serve_port", "prometheus_port"):
            port = getattr(self, name)
            require(1024 <= port <= 65535, f"--{name.replace('_', '-')} must be in 1024..65535 (got {port})")
            require(not 10002 <= port <= 19999, f"--{name.replace('_', '-')} {port} lies in Ray's worker port "
                                                f"range 10002..19999; pick another")
            require(_port_free(port), f"--{name.replace('_', '-')} {port} is already in use (is `dojo up` running? "
                                      f"try `dojo down`)")


@dataclasses.dataclass
class DownArgs:
    """Stop what `dojo up` started."""

    state_dir: str = "runs/platform"
    """The state dir given to `dojo up`."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    return env


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def _wait_http(url: str, timeout: float) -> bool:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=3).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def serve_config(args: UpArgs, state: Path) -> dict:
    """deploy/serve/raydojo.yaml, with the local port and the capabilities whose models exist here."""
    cfg = yaml.safe_load(SERVE_CONFIG.read_text())
    cfg["http_options"] = {"host": "127.0.0.1", "port": args.serve_port}
    app = cfg["applications"][0]
    app["args"]["storage_root"] = str(REPO)
    deployed = {"DojoIngress"}
    for cap, (module, field) in CAPABILITIES.items():
        if field is None or not _installed(module):
            if field in app["args"]:
                app["args"][field] = None
            continue
        run_dir = REPO / app["args"][field]
        committed = REPO / "deploy" / "models" / MODEL_DIRS[cap]
        if run_dir.exists():
            deployed.add(f"{cap.upper() if cap == 'asr' else cap.capitalize()}Model")
        elif committed.exists():
            app["args"][field] = str(committed.relative_to(REPO))
            deployed.add(f"{cap.upper() if cap == 'asr' else cap.capitalize()}Model")
        else:
            log.warning("no model for %s (train one with its `dojo ... train`); not deployed", cap)
            app["args"][field] = None
    app["deployments"] = [d for d in app["deployments"] if d["name"] in deployed]
    return cfg


def up(args: UpArgs) -> dict:
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    temp = Path(f"/tmp/raydojo-up-{os.getuid()}")
    state: dict = {"temp_dir": str(temp), "pids": [], "started": time.time()}
    (state_dir / "state.json").write_text(json.dumps(state))
    log.info("starting Ray head (dashboard :%d, metrics :%d)", args.dashboard_port, args.metrics_port)
    ports = {k: _free_port() for k in ("port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                        "runtime-env-agent-port", "ray-client-server-port")}
    _run([str(BIN / "ray"), "start", "--head", "--dashboard-host=127.0.0.1", f"--dashboard-port={args.dashboard_port}",
          f"--metrics-export-port={args.metrics_port}", f"--temp-dir={temp}", "--disable-usage-stats",
          *([f"--num-cpus={args.num_cpus}"] if args.num_cpus else []), *(f"--{k}={v}" for k, v in ports.items())],
         timeout=180)
    dashboard = f"http://127.0.0.1:{args.dashboard_port}"
    state.update(dashboard=dashboard, gcs=f"127.0.0.1:{ports['port']}", serve=f"http://127.0.0.1:{args.serve_port}")
    (state_dir / "state.json").write_text(json.dumps(state))
    if args.serve:
        cfg = serve_config(args, state_dir)
        (state_dir / "serve.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        log.info("deploying the Serve application (%s)", ", ".join(d["name"] for d in cfg["applications"][0]["deployments"]))
        _run([str(BIN / "serve"), "deploy", str(state_dir / "serve.yaml"), "--address", dashboard], timeout=180, cwd=REPO)
        if not _wait_http(f"{state['serve']}/healthz", timeout=300):
            raise RuntimeError(f"Serve did not become healthy; see {temp}/session_latest/logs/serve/")
    if args.job:
        deadline = time.time() + 90
        while True:
            p = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", dashboard, "--no-wait", "--working-dir",
                                str(REPO), "--", "dojo", "a3c", "train", "--env", "CartPole-v1", "--workers", "2",
                                "--max-frames", str(args.job_frames), "--run-dir",
                                str(state_dir / f"a3c-{int(time.time())}")],
                               capture_output=True, text=True, env=_env())
            if p.returncode == 0 or "No available agent" not in p.stderr or time.time() > deadline:
                break
            time.sleep(2)
        if p.returncode != 0:
            raise RuntimeError(f"ray job submit failed:\n{p.stderr[-2000:]}")
        state["job_id"] = "raysubmit_" + p.stdout.split("raysubmit_")[1].split()[0].strip("'\"")
    if args.prometheus and shutil.which("prometheus"):
        pdir = state_dir / "prometheus"
        pdir.mkdir(exist_ok=True)
        (pdir / "rules.yml").write_text(prometheus.dump(prometheus.alert_rules()))
        (pdir / "prometheus.yml").write_text(
            prometheus.dump(prometheus.scrape_config([f"127.0.0.1:{args.metrics_port}"])))
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={pdir / 'prometheus.yml'}", f"--storage.tsdb.path={pdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{args.prometheus_port}"],
            stdout=open(pdir / "prometheus.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        state["pids"].append(proc.pid)
        state["prometheus"] = f"http://127.0.0.1:{args.prometheus_port}"
    elif args.prometheus:
        log.warning("prometheus is not installed (Debian: apt-get install prometheus); skipping")
    (state_dir / "state.json").write_text(json.dumps(state, indent=2))
    _banner(state)
    return state


def _banner(state: dict) -> None:
    s = state.get("serve", "")
    lines = [
        "raydojo is up:",
        f"  Serve application   {s}   (OpenAPI docs: {s}/docs, health: {s}/healthz)",
        f"  Ray dashboard       {state['dashboard']}",
    ]
    if "prometheus" in state:
        lines.append(f"  Prometheus          {state['prometheus']}")
    if "job_id" in state:
        lines.append(f"  A3C job             {state['job_id']}  (RAY_AUTH_MODE=token ray job logs --address "
                     f"{state['dashboard']} -f {state['job_id']})")
    lines += [
        "try:",
        f"  curl {s}/healthz",
        f"  RAY_AUTH_MODE=token ray job submit --address {state['dashboard']} --working-dir . -- "
        "dojo a3c train --run-dir /tmp/a3c-job --target-return 475",
        "stop everything with: dojo down",
    ]
    print("\n".join(lines), flush=True)


def ray_processes(temp_dir: str) -> list:
    """The processes of the Ray cluster started with ``--temp-dir=temp_dir``: its daemons (they carry
    the temp dir on their command line) and all their descendants (agents and workers rename
    themselves, e.g. ``ray::DashboardAgent``)."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or []):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    found.pop(os.getpid(), None)
    return list(found.values())


def down(args: DownArgs) -> None:
    import psutil

    path = Path(args.state_dir) / "state.json"
    if not path.exists():
        fail("dojo down", f"nothing to stop: {path} does not exist (was `dojo up` run with this --state-dir?)")
    state = json.loads(path.read_text())
    for pid in state.get("pids", []):
        try:
            psutil.Process(pid).terminate()
            psutil.Process(pid).wait(timeout=20)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            psutil.Process(pid).kill()
    temp = state["temp_dir"]
    victims = ray_processes(temp)
    for proc in victims:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(victims, timeout=15)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    shutil.rmtree(temp, ignore_errors=True)
    path.unlink()
    print(f"raydojo is down ({len(victims)} Ray processes and {len(state.get('pids', []))} others stopped)")


def up_main(argv: list[str] | None = None) -> dict:
    setup_logging()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse(UpArgs, argv, prog="dojo up")
    try:
        return up(args)
    except RuntimeError as exc:
        print(f"dojo up: error: {exc}", file=sys.stderr)
        down(DownArgs(state_dir=args.state_dir))
        raise SystemExit(1) from exc


def down_main(argv: list[str] | None = None) -> None:
    setup_logging()
    down(parse(DownArgs, argv, prog="dojo down"))

"""Every command in README.md is exercised: dojo commands run here (with small budgets appended),
`make run` runs, and the rest are mapped to the test that covers them."""

from __future__ import annotations

import json
import re
import subprocess

from tests.conftest import REPO, bash_commands, run_dojo

# commands whose exercise lives in another test (pattern -> test)
COVERED_ELSEWHERE = {
    r'^(docker (build|push) |helm (repo add|install|dependency update) |kubectl |export (RAY_AUTH_MODE|RAY_AUTH_TOKEN|DOJO_API_KEY)=|curl -H "X-API-Key|ray job submit --address http://127\.0\.0\.1:8265 )':
        "tests/k8s/test_k8s_docs.py::test_readme_install_section_when_present",
    r"^ray start --head": "tests/a3c/test_cli.py::test_ray_job_submit_runs_the_same_entry_point",
    r"^RAY_AUTH_MODE=token ray job submit": "tests/a3c/test_cli.py::test_ray_job_submit_runs_the_same_entry_point",
    r"^make test( |$)": "CI runs it (.ci/run)",
    r"^make down": "test_make_run_brings_the_platform_up_and_make_down_stops_it",
    r"^curl http://127.0.0.1:8000/healthz": "test_make_run_brings_the_platform_up_and_make_down_stops_it",
    r"^make test-slow": "CI-equivalent slow run (make test-slow)",
    # the serving sections: each area's docs test runs README's lines as written
    r"^curl -s -X POST (-H \"Content-Type: audio/wav\"|-F \"file=@utterance.wav\")":
        "tests/asr/test_serve.py::test_documented_curl_commands",
    r"^\.venv/bin/dojo asr ": "tests/asr/test_docs.py::test_documented_dojo_commands_run",
    r"^(curl -s (-F file=@deploy/models/explain/examples/\S+ )?localhost:8000/v1/explain/|python3 -c .*overlay_png)":
        "tests/explain/test_docs.py::test_doc_http_commands_run",
    r"^curl -s -X POST http://127.0.0.1:8000/v1/(embed|similar|graph/classify) ":
        "tests/metric/test_metric_serve.py::test_doc_curl_examples",
}
# small budgets appended to README's sweep lines (later flags win)
SWEEP_BUDGETS = {
    ("sweep", "gan"): ["--num-samples", "2", "--max-iters", "2", "--steps-per-iter", "4", "--batch-size", "16",
                       "--eval-samples", "100", "--cpus-per-trial", "0.5"],
    ("sweep", "maml"): ["--num-samples", "2", "--iterations", "20", "--reports", "2", "--val-tasks", "20",
                        "--eval-tasks", "50"],
}


def readme_commands() -> list[str]:
    return bash_commands((REPO / "README.md").read_text())


def test_every_readme_command_is_accounted_for():
    for cmd in readme_commands():
        handled = cmd.startswith((".venv/bin/dojo a3c", ".venv/bin/dojo sweep", "make run", "make train-a3c", "make lint", "make dashboards"))
        assert handled or any(re.search(p, cmd) for p in COVERED_ELSEWHERE), f"README command without a test: {cmd}"


def test_readme_dojo_commands_run(ray_local, tmp_path):
    runs = tmp_path / "runs"
    # join the session's Ray (as `ray job submit` would) instead of paying a Ray start per command
    address = {"RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    n = 0
    for cmd in readme_commands():
        if not cmd.startswith((".venv/bin/dojo a3c", ".venv/bin/dojo sweep")):
            continue  # the other areas' lines run in their docs tests (COVERED_ELSEWHERE)
        argv = cmd.split()[1:]
        argv = [a.replace("runs/", f"{runs}/") for a in argv]
        if argv[:2] == ["a3c", "train"]:
            budget = "8000" if "--resume" in argv else "4000"
            argv += ["--max-frames", budget, "--workers", "2", "--envs-per-worker", "2", "--eval-episodes", "2",
                     "--worker-cpus", "0.5"]
        elif argv[:2] == ["a3c", "eval"]:
            argv += ["--episodes", "2"]
        elif tuple(argv[:2]) in SWEEP_BUDGETS:
            argv += SWEEP_BUDGETS[tuple(argv[:2])]
        p = run_dojo(*argv, timeout=300, env=address)
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-3000:]}"
        n += 1
    assert n >= 7
    assert json.loads((runs / "cp" / "result.json").read_text())["frames"] >= 8000
    for sweep in ("sweep-dcgan", "sweep-fomaml"):
        res = json.loads((runs / sweep / "result.json").read_text())
        assert res["trials"] >= 2 and res["best_metric"] == res["best_metric"], res  # not NaN


def test_make_train_a3c_reaches_target(tmp_path):
    p = subprocess.run(["make", "train-a3c", f"RUN_DIR={tmp_path}/run"], cwd=REPO, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "run" / "result.json").read_text())
    assert res["target_reached"] and res["eval_return_mean"] >= 475


def test_make_run_brings_the_platform_up_and_make_down_stops_it(tmp_path):
    import httpx

    from tests.conftest import _free_port

    ports = [_free_port() for _ in range(4)]
    state = f"--state-dir {tmp_path}/platform"
    up_args = (f"{state} --dashboard-port {ports[0]} --metrics-port {ports[1]} --serve-port {ports[2]} "
               f"--prometheus-port {ports[3]} --job-frames 20000")
    p = subprocess.run(["make", "run", f"UP_ARGS={up_args}"], cwd=REPO, capture_output=True, text=True, timeout=900)
    try:
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        assert "raydojo is up" in p.stdout
        curl = next(c for c in readme_commands() if c.startswith("curl http://127.0.0.1:8000/healthz"))
        out = subprocess.run(curl.replace(":8000", f":{ports[2]}").split(), capture_output=True, text=True, timeout=60)
        assert json.loads(out.stdout)["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{ports[2]}/docs", timeout=30).status_code == 200
    finally:
        d = subprocess.run(["make", "down", f"UP_STATE={state}"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert d.returncode == 0 and "raydojo is down" in d.stdout, d.stdout + d.stderr


def test_make_lint_and_make_dashboards():
    assert subprocess.run(["make", "lint"], cwd=REPO, capture_output=True).returncode == 0
    tracked = ["docs/metrics.md", "docs/dashboards.md", "deploy/grafana", "deploy/prometheus", "helm/raydojo/dashboards"]
    subprocess.run(["make", "dashboards"], cwd=REPO, check=True, capture_output=True)
    diff = subprocess.run(["git", "status", "--porcelain", "--", *tracked], cwd=REPO, capture_output=True, text=True)
    assert diff.stdout == "", f"generated files changed:\n{diff.stdout}"

"""Every command in README.md is exercised: dojo commands run here (with small budgets appended),
`make run` runs, and the rest are mapped to the test that covers them."""

from __future__ import annotations

import json
import re
import subprocess

from tests.conftest import BIN, REPO, run_dojo

# commands whose exercise lives in another test (pattern -> test)
COVERED_ELSEWHERE = {
    r"^ray start --head": "tests/a3c/test_cli.py::test_ray_job_submit_runs_the_same_entry_point",
    r"^RAY_AUTH_MODE=token ray job submit": "tests/a3c/test_cli.py::test_ray_job_submit_runs_the_same_entry_point",
    r"^make test( |$)": "CI runs it (.ci/run)",
    r"^make test-slow": "CI-equivalent slow run (make test-slow)",
}


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                cmds.append(line)
    return cmds


def test_every_readme_command_is_accounted_for():
    for cmd in readme_commands():
        handled = cmd.startswith((".venv/bin/dojo", "make run", "make lint", "python -m services.common.metrics"))
        assert handled or any(re.search(p, cmd) for p in COVERED_ELSEWHERE), f"README command without a test: {cmd}"


def test_readme_dojo_commands_run(tmp_path):
    runs = tmp_path / "runs"
    n = 0
    for cmd in readme_commands():
        if not cmd.startswith(".venv/bin/dojo"):
            continue
        argv = cmd.split()[1:]
        argv = [a.replace("runs/", f"{runs}/") for a in argv]
        if argv[:2] == ["a3c", "train"]:
            budget = "8000" if "--resume" in argv else "4000"
            argv += ["--max-frames", budget, "--workers", "2", "--envs-per-worker", "2", "--eval-episodes", "2",
                     "--worker-cpus", "0.5"]
        elif argv[:2] == ["a3c", "eval"]:
            argv += ["--episodes", "2"]
        p = run_dojo(*argv, timeout=300)
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-3000:]}"
        n += 1
    assert n >= 5
    assert json.loads((runs / "cp" / "result.json").read_text())["frames"] >= 8000


def test_make_run_trains_to_target(tmp_path):
    p = subprocess.run(["make", "run", f"RUN_DIR={tmp_path}/run"], cwd=REPO, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "run" / "result.json").read_text())
    assert res["target_reached"] and res["eval_return_mean"] >= 475


def test_make_lint_and_metrics_doc_command():
    assert subprocess.run(["make", "lint"], cwd=REPO, capture_output=True).returncode == 0
    before = (REPO / "docs" / "metrics.md").read_text()
    subprocess.run([str(BIN / "python"), "-m", "services.common.metrics"], cwd=REPO, check=True, capture_output=True)
    assert (REPO / "docs" / "metrics.md").read_text() == before

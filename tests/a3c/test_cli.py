"""The `dojo a3c` entry points as users run them: bad input, resume, eval, and `ray job submit`."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from services.a3c import metrics as M
from tests.conftest import ray_job_submit, run_dojo


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--env", "NoSuchEnv-v0"], "--env 'NoSuchEnv-v0': unknown Gymnasium environment"),
        (["--workers", "0"], "--workers must be >= 1 (got 0)"),
        (["--run-dir", "/proc/raydojo-cannot-write-here"], "is not writable"),
        (["--mode", "both"], "invalid choice 'both' for argument '--mode'"),
        (["--lr", "-1"], "--lr must be > 0"),
        (["--mode", "sync", "--pipeline"], "--pipeline applies to --mode async only"),
        (["--max-minutes", "0"], "--max-minutes must be > 0 (got 0.0)"),
        (["--resume", "--run-dir", "{tmp}/empty"], "--resume: no checkpoint"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, argv, needle):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    p = run_dojo("a3c", "train", *argv, timeout=60)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("dojo a3c train: error:") and needle in lines[0], lines[0]


def test_more_gpus_than_the_local_cluster_has_is_an_error_not_a_hang(tmp_path):
    """--ps-gpus beyond the local Ray's GPUs: exit 2 naming the flag (the server actor would wait forever)."""
    p = run_dojo("a3c", "train", "--ps-gpus", "64", "--run-dir", str(tmp_path / "r"), timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("dojo a3c train: error: --ps-gpus 64: the Ray cluster has "), p.stderr[-2000:]


def test_max_minutes_stops_training_on_time(tmp_path):
    """--max-minutes ends a run whose frame budget it would never reach; the result is complete."""
    run = tmp_path / "timed"
    p = run_dojo("a3c", "train", "--run-dir", str(run), "--max-frames", str(10**9), "--max-minutes", "0.1",
                 "--eval-episodes", "2")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads((run / "result.json").read_text())
    assert 0 < r["frames"] < 10**9 and r["train_s"] >= 6.0 - 1.0
    assert (run / "policy.pt").exists()
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = json.loads((run / "learning_curve.json").read_text())
    assert len(curve["train"]) > 10 and curve["eval"] and 0 < curve["eval"][-1][0] <= r["frames"]


def test_unknown_area_and_verb_exit_2():
    assert run_dojo("nope").returncode == 2
    p = run_dojo("a3c", "fly")
    assert p.returncode == 2 and "unknown verb 'fly'" in p.stderr


def test_train_resume_and_eval_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    p = run_dojo("a3c", "train", "--run-dir", str(run), "--max-frames", "20000", "--checkpoint-every", "100",
                 "--eval-episodes", "5")
    assert p.returncode == 0, p.stderr[-3000:]
    first = json.loads((run / "result.json").read_text())
    assert set(json.loads((run / "config.json").read_text())) >= {"env", "workers", "mode", "max_frames", "seed"}
    # the same run-dir without --resume is refused: nothing gets overwritten
    p = run_dojo("a3c", "train", "--run-dir", str(run), "--max-frames", "40000")
    assert p.returncode == 2 and "already holds checkpoints" in p.stderr
    p = run_dojo("a3c", "train", "--run-dir", str(run), "--max-frames", "40000", "--resume", "--eval-episodes", "5")
    assert p.returncode == 0, p.stderr[-3000:]
    second = json.loads((run / "result.json").read_text())
    assert second["resumed_from_version"] == first["grads_applied"]
    assert second["frames"] >= 40000 > first["frames"]
    assert second["grads_applied"] > first["grads_applied"]
    assert second["episodes"] > first["episodes"]
    p = run_dojo("a3c", "eval", "--run-dir", str(run), "--episodes", "3")
    assert p.returncode == 0, p.stderr[-3000:]
    ev = json.loads((run / "eval.json").read_text())
    assert ev["eval_episodes"] == 3 and ev["eval_return_mean"] > 0
    assert run_dojo("a3c", "eval", "--run-dir", str(tmp_path / "missing")).returncode == 2


def test_ray_job_submit_runs_the_same_entry_point(ray_head, tmp_path):
    run = tmp_path / "jobrun"
    p = ray_job_submit(ray_head, ["dojo", "a3c", "train", "--run-dir", str(run), "--target-return", "475"])
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "succeeded" in p.stdout + p.stderr
    res = json.loads((run / "result.json").read_text())
    assert res["target_reached"] and res["eval_return_mean"] >= 475
    # the job's metrics reach Ray's metrics port under their contract names
    body = urllib.request.urlopen(f"http://127.0.0.1:{ray_head['metrics']}/metrics", timeout=10).read().decode()
    scraped = set(re.findall(r"^(ray_dojo_a3c_\w+?)(?:_bucket|_count|_sum)?\{", body, re.M))
    expected = {m.scraped_name for m in M.ALL if m.name not in (
        "dojo_a3c_worker_restarts", "dojo_a3c_server_restarts", "dojo_a3c_grads_dropped")}  # zero in a clean run
    assert expected <= scraped, expected - scraped

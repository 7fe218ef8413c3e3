"""A3C/A2C learn CartPole on a real local Ray, and survive killed workers and a killed server."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import ray

from services.a3c.train import TrainArgs, train
from services.common import checkpoint
from services.common.rundir import RunDir


def _args(tmp_path, **kw) -> TrainArgs:
    kw = {"env": "CartPole-v1", "workers": 2, "max_frames": 300_000, "target_return": 475.0,
          "run_dir": str(tmp_path / "run"), **kw}
    args = TrainArgs(**kw)
    args.validate()
    return args


@pytest.mark.parametrize("seed", [0, 1])
def test_async_reaches_475_within_300k_frames(ray_local, tmp_path, seed):
    res = train(_args(tmp_path, seed=seed))
    assert res["target_reached"], res
    assert res["eval_return_mean"] >= 475 and res["eval_episodes"] == 20
    assert res["frames"] <= 300_000 + 2 * 8 * 5  # at most one round past the budget
    assert res["grads_applied"] > 0 and res["staleness_max"] >= 1  # truly asynchronous
    run = RunDir(str(tmp_path / "run"))
    for name in ("config.json", "result.json", "policy.pt"):
        assert run.exists(name)
    assert checkpoint.list_steps(run)


def test_sync_reaches_400_within_300k_frames(ray_local, tmp_path):
    res = train(_args(tmp_path, mode="sync", seed=0, target_return=400.0))
    assert res["target_reached"] and res["eval_return_mean"] >= 400, res
    assert res["staleness_max"] == 0  # A2C: every gradient was computed on the current weights


def _named(prefix: str) -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]


def _chaos(until, action, timeout: float = 120.0):
    """Run ``action()`` in a thread once ``until()`` is true."""
    done = {}

    def loop():
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                if until():
                    done["result"] = action()
                    return
            except Exception as exc:  # noqa: BLE001 - keep polling while actors start
                done["error"] = repr(exc)
            time.sleep(0.2)

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return th, done


def _server_frames() -> int:
    names = _named("a3c-ps:")
    return ray.get(ray.get_actor(names[0]).summary.remote())["frames"] if names else 0


def test_killed_worker_is_replaced_and_training_reaches_target(ray_local, tmp_path):
    def kill_worker():
        name = sorted(_named("a3c-worker-0."))[-1]
        pid = ray.get(ray.get_actor(name).pid.remote())
        os.kill(pid, signal.SIGKILL)  # a real crash of the worker process
        return pid

    th, done = _chaos(lambda: _server_frames() > 15_000, kill_worker)
    res = train(_args(tmp_path, seed=0))
    th.join(timeout=1)
    assert "result" in done, done
    assert res["worker_restarts"] >= 1
    assert res["target_reached"], res


def test_killed_server_resumes_from_checkpoint(ray_local, tmp_path):
    run = RunDir(str(tmp_path / "run"))

    def kill_server():
        actor = ray.get_actor(_named("a3c-ps:")[0])
        os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)  # a real crash of the server process
        return checkpoint.list_steps(run)[-1]

    th, done = _chaos(lambda: bool(checkpoint.list_steps(run)), kill_server)
    res = train(_args(tmp_path, seed=0, checkpoint_every=100, target_return=None, max_frames=60_000))
    th.join(timeout=1)
    assert "result" in done, done
    assert res["server_restarts"] == 1
    restored_version = done["result"]
    # counters survive the crash (up to one checkpoint interval is recomputed, not lost)
    assert res["frames"] >= 60_000 - 100 * 2 * 8 * 5
    assert res["grads_applied"] > restored_version


@pytest.mark.parametrize(
    "overrides",
    [
        {"lstm": True, "max_frames": 4_000},
        {"env": "ALE/Pong-v5", "workers": 1, "envs_per_worker": 2, "max_frames": 800, "eval_episodes": 1},
        {"optimizer": "adam", "gae_lambda": 0.95, "max_frames": 4_000},
    ],
    ids=["lstm", "atari-pong", "adam-gae"],
)
def test_variants_run_end_to_end(ray_local, tmp_path, overrides):
    res = train(_args(tmp_path, target_return=None, eval_every_frames=10**9, **overrides))
    assert res["frames"] >= overrides["max_frames"] and res["grads_applied"] > 0
    assert res["eval_episodes"] == overrides.get("eval_episodes", 20)
    assert RunDir(str(tmp_path / "run")).exists("policy.pt")


def test_pipelined_workers_never_wait_for_their_own_update(ray_local, tmp_path):
    """--pipeline: a returning worker gets the weights requested before its own gradient was applied, so
    with two workers each gradient is two updates old when it lands (one without --pipeline)."""
    res = train(_args(tmp_path, target_return=None, max_frames=20_000, eval_every_frames=10**9, pipeline=True))
    assert res["frames"] >= 20_000 and res["grads_applied"] > 0
    assert res["staleness_mean"] > 1.5 and res["staleness_max"] >= 2, res


def test_staleness_bound_drops_old_gradients(ray_local, tmp_path):
    res = train(_args(tmp_path, target_return=None, max_frames=20_000, workers=3, worker_cpus=0.5,
                      max_staleness=1, eval_every_frames=10**9, eval_episodes=2))
    assert res["staleness_max"] <= 1  # applied gradients respect the bound
    assert res["grads_applied"] + res["grads_dropped"] == pytest.approx(res["frames"] / 40, abs=3)


def test_auto_resume_starts_afresh_then_resumes_the_same_command(ray_local, tmp_path):
    """What a retried RayJob does: the same `--auto-resume` command twice on one run-dir."""
    kw = {"auto_resume": True, "target_return": None, "checkpoint_every": 20, "eval_episodes": 2}
    first = train(_args(tmp_path, max_frames=8_000, **kw))
    assert first["resumed_from_version"] == -1
    first_curve = json.loads((tmp_path / "run" / "learning_curve.json").read_text())
    second = train(_args(tmp_path, max_frames=16_000, **kw))
    assert second["resumed_from_version"] == first["grads_applied"]  # the last checkpoint is the final one
    assert second["frames"] >= 16_000 > first["frames"]
    # the resumed run's learning curve continues the first one's
    curve = json.loads((tmp_path / "run" / "learning_curve.json").read_text())
    first_eval = first_curve["eval"]
    assert curve["eval"][: len(first_eval)] == first_eval and len(curve["eval"]) > len(first_eval)
    assert curve["train"][: len(first_curve["train"])] == first_curve["train"]
    assert max(f for f, _ in curve["train"]) > first["frames"]


def _live_first_layer_filters(model, frames) -> int:
    """Filters of the first convolution that are positive somewhere on some of ``frames`` (uint8, (B, 4, 84, 84))."""
    import torch

    with torch.no_grad():
        h = model.trunk[1](model.trunk[0](model._prepare(torch.from_numpy(frames))))  # conv 16·8×8/4 → ReLU
    return int((h > 0).flatten(2).any(-1).any(0).sum())


def test_atari_defaults_keep_the_first_convolution_alive(ray_local, tmp_path):
    """With RMSProp at 7e-4 (OpenAI A2C's recipe) or 1e-3, every filter of the Pong network's first layer went dead
    (never positive on any frame) within 25-5000 updates and the network never learnt (bench/README.md, "A3C on
    Pong"). The Atari defaults (Adam 1e-4, 1000 warm-up updates) must keep most of them alive."""
    import numpy as np

    from services.a3c.envs import VecEnv
    from services.a3c.evaluate import load_run_policy

    env = VecEnv("ALE/Pong-v5", 8, seed=5, train=False)
    env.reset()
    frames = np.concatenate([env.step(np.random.default_rng(t).integers(0, 6, 8))[0] for t in range(160)][::20])
    res = train(_args(tmp_path, env="ALE/Pong-v5", workers=2, max_frames=240_000, target_return=None,
                      eval_episodes=1, eval_every_frames=10**9))
    assert res["grads_applied"] >= 1400  # 240k frames = 1 500 updates of 2 × 8 environments × 5 steps × 4 frames
    model, _ = load_run_policy(RunDir(str(tmp_path / "run")))
    alive = _live_first_layer_filters(model, frames)
    assert alive >= 8, f"only {alive}/16 first-layer filters alive after {res['grads_applied']} updates"

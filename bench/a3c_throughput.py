"""A3C throughput: raw environment speed, whole-system frames/s (efficiency), parameter-server cost.

    python bench/a3c_throughput.py --workers 2 --seconds 30

1. raw env steps/s on one core (random actions, the same VecEnv the workers use);
2. whole-system frames/s of a real A3C run (2 workers on this 2-core machine) and the
   efficiency = system frames/s ÷ (raw frames/s × workers), with and without ``--pipeline``;
3. the compute ceiling: one core's cost of the network per agent step (the rollout's batched
   forward passes + the unroll forward and backward over t_max × envs samples) next to the
   environment's cost per step → the best efficiency any design reaches when both share the core;
4. the server's per-apply cost for the Atari network (0.68 M parameters: unflatten the
   gradient, shared RMSProp step, flatten the weights) → applies/s it can sustain, compared
   with the gradient rate 16 workers would produce at the measured per-worker rate.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import ray
import torch


def raw_env_rate(env_id: str, n_envs: int, seconds: float) -> float:
    from services.a3c.envs import VecEnv

    env = VecEnv(env_id, n_envs, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    steps, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        env.step(rng.integers(0, env.action_space.n, size=n_envs))
        steps += n_envs
    return steps / (time.monotonic() - t0)


def system_rate(env_id: str, workers: int, frames: int, envs_per_worker: int, pipeline: bool = False,
                ps_gpus: float = 0.0) -> dict:
    from services.a3c.train import TrainArgs, train

    with tempfile.TemporaryDirectory() as d:
        args = TrainArgs(env=env_id, workers=workers, max_frames=frames, run_dir=d, eval_every_frames=10**9,
                         eval_episodes=1, envs_per_worker=envs_per_worker, checkpoint_every=10**9,
                         pipeline=pipeline, ps_gpus=ps_gpus)
        args.validate()
        res = train(args)
    return {"fps": res["fps"], "grads_per_s": res["grads_applied"] / res["train_s"], "train_s": res["train_s"],
            "staleness_mean": res["staleness_mean"], "ps_device": res["ps_device"]}


def network_cost_per_step(env_id: str, n_envs: int = 8, t_max: int = 5, reps: int = 20) -> dict:
    """Seconds of one core per agent step spent in the network, measured as the worker does it:
    t_max batched forward passes over n_envs observations, then forward + backward of the unroll."""
    from services.a3c.envs import VecEnv
    from services.a3c.model import ActorCritic

    env = VecEnv(env_id, 1, seed=0)
    model = ActorCritic(env.observation_space.shape, int(env.action_space.n))
    obs = torch.from_numpy(np.stack([env.reset()[0]] * n_envs))
    batch = torch.from_numpy(np.stack([env.reset()[0]] * (n_envs * t_max)))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(t_max + 1):
                model(obs)
        logits, value, _ = model(batch)
        (logits.logsumexp(-1).sum() + value.sum()).backward()
        times.append(time.perf_counter() - t0)
    per_step = float(np.median(times[2:])) / (n_envs * t_max)
    return {"network_s_per_step": per_step, "n_params": sum(p.numel() for p in model.parameters())}


def server_apply_cost(n: int = 200, ps_gpus: float = 0.0) -> dict:
    from services.a3c.server import ParameterServer
    from services.a3c.train import TrainArgs

    with tempfile.TemporaryDirectory() as d:
        args = TrainArgs(env="ALE/Pong-v5", run_dir=d, checkpoint_every=10**9, ps_gpus=ps_gpus)
        args.validate()
        ps = ParameterServer(args, "bench", resume=False)
        n_params = sum(p.numel() for p in ps.model.parameters())
        g = np.random.default_rng(0).normal(size=n_params).astype(np.float32) * 1e-3
        info = {"version": 0, "frames": 40, "episodes": [], "entropy": 1.0, "value_loss": 1.0,
                "policy_loss": 0.0, "grad_norm": 1.0}
        for _ in range(10):
            ps.apply_gradients(g, dict(info, version=ps.version))
        t0 = time.monotonic()
        for _ in range(n):
            ps.apply_gradients(g, dict(info, version=ps.version))
        per = (time.monotonic() - t0) / n
    return {"params": n_params, "apply_ms": per * 1e3, "applies_per_s": 1.0 / per, "device": str(ps.device)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--cartpole-frames", type=int, default=150_000)
    ap.add_argument("--pong-frames", type=int, default=40_000)
    ap.add_argument("--ps-gpus", type=float, default=0.0, help="GPUs of the parameter server (0 = on a CPU)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out: dict = {}
    out["raw"] = {"CartPole-v1": raw_env_rate("CartPole-v1", 8, a.seconds),
                  "ALE/Pong-v5": 4 * raw_env_rate("ALE/Pong-v5", 8, a.seconds)}  # frames = 4 x agent steps
    for env_id in ("CartPole-v1", "ALE/Pong-v5"):
        net = network_cost_per_step(env_id)
        skip = 4 if env_id.startswith("ALE/") else 1
        env_s = skip / out["raw"][env_id]  # one core's seconds per agent step in the environment
        net["env_s_per_step"] = env_s
        net["ceiling_efficiency"] = env_s / (env_s + net["network_s_per_step"])
        out.setdefault("ceiling", {})[env_id] = net
    ray.init(num_cpus=max(2, a.workers), include_dashboard=False, logging_level="ERROR")
    out["server"] = server_apply_cost(ps_gpus=a.ps_gpus)
    for env_id, frames in (("CartPole-v1", a.cartpole_frames), ("ALE/Pong-v5", a.pong_frames)):
        runs = {pipeline: system_rate(env_id, a.workers, frames, envs_per_worker=8, pipeline=pipeline,
                                      ps_gpus=a.ps_gpus)
                for pipeline in (False, True)}
        for r in runs.values():
            r["efficiency"] = r["fps"] / (out["raw"][env_id] * a.workers)
        out[env_id] = {**runs[False], "pipelined": runs[True]}  # the plain run's keys as before
    per_worker = out["ALE/Pong-v5"]["grads_per_s"] / a.workers
    out["server_vs_16_workers"] = {
        "per_worker_grads_per_s": per_worker,
        "demand_16_workers_per_s": 16 * per_worker,
        "server_capacity_per_s": out["server"]["applies_per_s"],
        "server_utilisation_at_16": 16 * per_worker / out["server"]["applies_per_s"],
    }
    ray.shutdown()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""``dojo a3c train``: the A3C / A2C driver — a plain loop over ``ray.wait``.

    workers ──compute_gradients(weights)──► (gradient, info)
    driver  ──apply_gradients(gradient)───► ParameterServer ──► new weights ──► that worker

Async (A3C): each worker's gradient is applied as soon as it arrives and that worker
resumes with the fresh weights, while the others keep acting on what they had.
Sync (A2C): every round waits for all workers, averages their gradients, one step.
The gradient and weight arrays travel worker → server → worker through Ray's object
store (numpy, zero-copy); the driver only routes references and small info dicts.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from typing import Any, Literal

import numpy as np
import ray
import torch
from ray.exceptions import RayActorError, RayTaskError

from services.a3c.envs import check_env_id, is_atari
from services.a3c.evaluate import evaluate_weights
from services.a3c.server import ParameterServer, model_config
from services.a3c.worker import RolloutWorker
from services.common import checkpoint
from services.common.config import ConfigError, fail, parse, require, resolve_auto_resume, to_dict
from services.common.progress import Progress, log, setup_logging
from services.common.ray_utils import init_ray, require_gpus, shutdown_ray_if_local
from services.common.rundir import RunDir


@dataclasses.dataclass
class TrainArgs:
    """Train an actor-critic agent with asynchronous (A3C) or synchronous (A2C) workers on Ray."""

    env: str = "CartPole-v1"
    """Gymnasium environment id (ALE ids such as ALE/Pong-v5 get Atari preprocessing)."""
    workers: int = 2
    """Number of rollout-worker actors."""
    mode: Literal["async", "sync"] = "async"
    """async = A3C (apply each gradient on arrival); sync = A2C (average per round)."""
    max_frames: int = 300_000
    """Stop after this many environment frames (Atari: agent steps × frame skip 4)."""
    target_return: float | None = None
    """Stop as soon as the greedy evaluation's mean return reaches this value."""
    max_minutes: float | None = None
    """Also stop after this many minutes of training (this session's loop; a resumed run gets a fresh budget)."""
    run_dir: str = "runs/a3c"
    """Where config.json, result.json, checkpoints/ and policy.pt go (path or pyarrow URI)."""
    seed: int = 0
    """Random seed (network init, environments, sampling)."""
    resume: bool = False
    """Continue from the newest checkpoint in --run-dir."""
    auto_resume: bool = False
    """Resume when --run-dir already holds checkpoints and start afresh when it holds none, so the same command can
    simply be run again after a crash (the Helm chart's RayJobs pass it: a retried job resumes)."""
    ps_gpus: float = 0.0
    """GPUs for the parameter server (fractions allowed); the optimizer then runs on CUDA."""
    worker_cpus: float = 1.0
    """Logical CPUs reserved per worker actor."""
    envs_per_worker: int = 8
    """Environments each worker steps in lock-step (batched forward passes)."""
    t_max: int = 5
    """Rollout length k of the k-step bootstrapped returns."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """1.0 = the paper's k-step returns; < 1 uses GAE(λ) advantages."""
    optimizer: Literal["rmsprop", "adam"] | None = None
    """Server optimizer; its statistics are shared by all workers (default: Adam for Atari, RMSProp otherwise:
    with RMSProp at 7e-4 or 1e-3 the Atari network's first layer died within a few thousand updates; docs/a3c.md)."""
    lr: float | None = None
    """Learning rate (default: 1e-4 for Atari, as in the paper's range and public A3C ports; 1e-3 otherwise)."""
    lr_warmup: int | None = None
    """Server updates over which the learning rate rises linearly from 0 to --lr (default: 1000 for Atari, 0
    otherwise). RMSProp's statistics start at zero, so its first steps move every weight by ~10 × lr: on Atari
    frames (no pixel is ever black in Pong) that shifted the first convolution's filters together: of 16, 12 were
    alive at the start, 3 after 25 updates at 7e-4 and none after 300 (ReLU never positive), and the network
    never learnt."""
    rms_alpha: float = 0.99
    """RMSProp decay α."""
    rms_eps: float = 1e-5
    """RMSProp / Adam ε."""
    value_coef: float = 0.5
    """α: weight of the value loss."""
    entropy_coef: float = 0.01
    """β: weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Clip each worker gradient to this global L2 norm."""
    hidden: int = 128
    """Hidden width of the MLP trunk (vector observations)."""
    lstm: bool = False
    """Add an LSTM cell (256) between trunk and heads."""
    clip_rewards: bool | None = None
    """Clip rewards to their sign (default: on for Atari, off otherwise)."""
    pipeline: bool = False
    """Async only: hand a returning worker the newest weights already requested from the server instead of
    waiting for its own gradient to be applied, so it never idles through the server round trip
    (staleness grows by about one update)."""
    max_staleness: int = 0
    """Bound on gradient staleness (server version − gradient version); 0 = unbounded."""
    stale_policy: Literal["drop", "scale"] = "drop"
    """What to do with a gradient over the bound: drop it, or scale it by 1/(1+excess)."""
    checkpoint_every: int = 500
    """Checkpoint the server every N applied updates (and at the end)."""
    keep_checkpoints: int = 3
    """How many checkpoints to keep."""
    eval_every_frames: int = 20_000
    """Greedy evaluation interval (in frames) while training."""
    eval_episodes: int = 20
    """Episodes per greedy evaluation."""
    max_worker_restarts: int = 20
    """Give up after this many worker replacements (a crash loop is a bug, not bad luck)."""

    def validate(self) -> None:
        require(self.workers >= 1, f"--workers must be >= 1 (got {self.workers})")
        require(self.max_frames > 0, f"--max-frames must be > 0 (got {self.max_frames})")
        require(self.max_minutes is None or self.max_minutes > 0,
                f"--max-minutes must be > 0 (got {self.max_minutes})")
        require(self.envs_per_worker >= 1, f"--envs-per-worker must be >= 1 (got {self.envs_per_worker})")
        require(self.t_max >= 1, f"--t-max must be >= 1 (got {self.t_max})")
        require(0.0 < self.gamma <= 1.0, f"--gamma must be in (0, 1] (got {self.gamma})")
        require(0.0 <= self.gae_lambda <= 1.0, f"--gae-lambda must be in [0, 1] (got {self.gae_lambda})")
        require(self.ps_gpus >= 0, f"--ps-gpus must be >= 0 (got {self.ps_gpus})")
        require(self.worker_cpus >= 0, f"--worker-cpus must be >= 0 (got {self.worker_cpus})")
        require(self.max_staleness >= 0, f"--max-staleness must be >= 0 (got {self.max_staleness})")
        require(not (self.pipeline and self.mode == "sync"), "--pipeline applies to --mode async only")
        require(self.eval_episodes >= 1, f"--eval-episodes must be >= 1 (got {self.eval_episodes})")
        require(self.max_grad_norm > 0, f"--max-grad-norm must be > 0 (got {self.max_grad_norm})")
        check_env_id(self.env)
        atari = is_atari(self.env)
        for name, (atari_value, other_value) in ENV_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, atari_value if atari else other_value)
        require(self.lr > 0, f"--lr must be > 0 (got {self.lr})")
        require(self.lr_warmup >= 0, f"--lr-warmup must be >= 0 (got {self.lr_warmup})")


# The arguments whose default (None) depends on --env: (value for ALE Atari ids, value otherwise).
ENV_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "optimizer": ("adam", "rmsprop"),
    "lr": (1e-4, 1e-3),
    "lr_warmup": (1000, 0),
    "clip_rewards": (True, False),
}


class Driver:
    """Owns the actors and the loop; ``run()`` returns the result dict."""

    def __init__(self, args: TrainArgs, run_dir: RunDir):
        self.args, self.run_dir = args, run_dir
        self.run_id = f"{run_dir.root.rstrip('/').split('/')[-1]}-{int(time.time()) % 100000}"
        self.ps = (
            ray.remote(ParameterServer)
            .options(name=f"a3c-ps:{self.run_id}", max_restarts=5, max_task_retries=0,
                     num_cpus=0, num_gpus=args.ps_gpus)
            .remote(args, self.run_id, args.resume)
        )
        self.generation = [0] * args.workers
        self.workers = [self._new_worker(i) for i in range(args.workers)]
        self.replacements = 0
        self.eval_ref = None
        self.eval_weights = None
        self.best_eval: dict[str, Any] | None = None
        self.reached: dict[str, Any] | None = None
        self.curve_train: list[tuple[int, float]] = []  # (frames, episode return) of training episodes
        self.curve_eval: list[tuple[int, float]] = []  # (frames, greedy mean return)
        self.eval_frames = 0

    def _new_worker(self, i: int):
        self.generation[i] += 1
        name = f"a3c-worker-{i}.{self.generation[i]}:{self.run_id}"
        return (
            ray.remote(RolloutWorker)
            .options(name=name, max_restarts=0, num_cpus=self.args.worker_cpus)
            .remote(self.args, i)
        )

    def _replace_worker(self, i: int, err: Exception) -> None:
        self.replacements += 1
        log.warning("worker %d died (%s); starting a replacement", i, type(err).__name__)
        if self.replacements > self.args.max_worker_restarts:
            raise RuntimeError(f"{self.replacements} worker failures: giving up") from err
        ray.kill(self.workers[i], no_restart=True)
        self.workers[i] = self._new_worker(i)
        self.ps.note_worker_restart.remote(0.0)

    def _worker_died(self, i: int, err: Exception) -> bool:
        """Did worker ``i`` itself die (rather than the server whose weights it was waiting for)?"""
        return isinstance(err, RayActorError) and getattr(err, "actor_id", None) == self.workers[i]._actor_id.hex()

    def _handle_failure(self, i: int, err: Exception):
        """Replace a dead worker; after a server failure, fetch the restored server's weights."""
        if self._worker_died(i, err):
            self._replace_worker(i, err)
            return None
        log.warning("parameter server failed (%s); it restarts from its last checkpoint", type(err).__name__)
        return self.ps.get_weights.remote()

    def _maybe_evaluate(self, frames: int, weights_ref, force: bool = False) -> None:
        if self.eval_ref is not None:
            return
        if force or frames >= self.next_eval:
            self.next_eval = frames + self.args.eval_every_frames
            self.eval_weights, self.eval_frames = weights_ref, frames
            self.eval_ref = ray.remote(evaluate_weights).options(num_cpus=0).remote(
                model_config(self.args), weights_ref, self.args.eval_episodes)

    def _collect_eval(self, block: bool = False) -> None:
        if self.eval_ref is None:
            return
        ready, _ = ray.wait([self.eval_ref], timeout=None if block else 0)
        if not ready:
            return
        try:
            res = ray.get(self.eval_ref)
        except (RayActorError, RayTaskError) as exc:  # the server died while we waited
            log.warning("evaluation failed: %s", type(exc).__name__)
            self.eval_ref = None
            return
        res["weights_ref"] = self.eval_weights
        self.eval_ref = None
        self.curve_eval.append((self.eval_frames, float(res["mean"])))
        log.info("greedy eval (version %d): mean return %.1f over %d episodes",
                 res["version"], res["mean"], len(res["returns"]))
        if self.best_eval is None or res["mean"] >= self.best_eval["mean"]:
            self.best_eval = res
        if self.args.target_return is not None and res["mean"] >= self.args.target_return and self.reached is None:
            self.reached = res

    def run(self) -> dict[str, Any]:
        a = self.args
        t0 = time.monotonic()
        start = ray.get(self.ps.summary.remote())
        frames = start["frames"]
        if a.resume:
            log.info("resumed from checkpoint at version %s (%d frames)", start["version"], frames)
            self._load_curve(frames)
        self.next_eval = frames + a.eval_every_frames
        weights = self.ps.get_weights.remote()
        t_loop = time.monotonic()
        with Progress(f"A3C {a.mode} {a.env}", total=a.max_frames, unit="frames", initial=frames) as bar:
            if a.mode == "async":
                frames, weights = self._loop_async(frames, weights, bar)
            else:
                frames, weights = self._loop_sync(frames, weights, bar)
        loop_s = time.monotonic() - t_loop
        if self.reached is None:
            self._collect_eval(block=True)
            if self.reached is None:  # a final evaluation of the final weights
                self._maybe_evaluate(frames, weights, force=True)
                self._collect_eval(block=True)
        ray.get(self.ps.note_wall.remote(start["wall_s_before"] + time.monotonic() - t0))
        ray.get(self.ps.save_checkpoint.remote())
        summary = ray.get(self.ps.summary.remote())
        final = self.reached or self.best_eval
        self._save_policy(final)
        self._save_curve()
        wall = time.monotonic() - t0
        return {
            "env": a.env,
            "mode": a.mode,
            "workers": a.workers,
            "frames": summary["frames"],
            "episodes": summary["episodes"],
            "wall_s": wall,
            "wall_s_total": start["wall_s_before"] + wall,
            "train_s": loop_s,
            "fps": (frames - start["frames"]) / loop_s,  # training loop only (no start-up, no final eval)
            "train_return_mean_100": summary["train_return_mean_100"],
            "eval_return_mean": final["mean"],
            "eval_episodes": len(final["returns"]),
            "eval_version": final["version"],
            "target_return": a.target_return if a.target_return is not None else float("nan"),
            "target_reached": bool(self.reached is not None),
            "grads_applied": summary["grads_applied"],
            "grads_dropped": summary["grads_dropped"],
            "staleness_mean": summary["staleness_mean"],
            "staleness_max": summary["staleness_max"],
            "worker_restarts": summary["worker_restarts"],
            "server_restarts": summary["server_restarts"],
            "resumed_from_version": start["version"] if a.resume else -1,
            "ps_device": summary["device"],
        }

    def _done(self, frames: int, t0: float) -> bool:
        a = self.args
        out_of_time = a.max_minutes is not None and time.monotonic() - t0 >= 60 * a.max_minutes
        return frames >= a.max_frames or self.reached is not None or out_of_time

    def _loop_async(self, frames: int, weights, bar: Progress):
        a = self.args
        # info ref -> (worker index, gradient ref)
        pending: dict[Any, tuple[int, Any]] = {}

        def submit(i: int, w) -> None:
            grad_ref, info_ref = self.workers[i].compute_gradients.remote(w)
            pending[info_ref] = (i, grad_ref)

        for i in range(a.workers):
            submit(i, weights)
        t0 = time.monotonic()
        while not self._done(frames, t0):
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            self._collect_eval()
            for ref in ready:
                i, grad_ref = pending.pop(ref)
                try:
                    info = ray.get(ref)
                except (RayActorError, RayTaskError) as err:
                    weights = self._handle_failure(i, err) or weights
                    submit(i, weights)
                    continue
                applied = self.ps.apply_gradients.remote(grad_ref, info)
                submit(i, weights if a.pipeline else applied)
                weights = applied
                frames += info["frames"]
                self._episodes(frames, info["episodes"])
            self._maybe_evaluate(frames, weights)
            bar.update(frames, episodes_ret100=self._recent_return())
        return frames, weights  # in-flight rollouts are dropped with their actors in close()

    def _loop_sync(self, frames: int, weights, bar: Progress):
        t0 = time.monotonic()
        while not self._done(frames, t0):
            calls = [(i, *w.compute_gradients.remote(weights)) for i, w in enumerate(self.workers)]
            grads, infos = [], []
            for i, grad_ref, info_ref in calls:
                try:
                    infos.append(ray.get(info_ref))
                    grads.append(grad_ref)
                except (RayActorError, RayTaskError) as err:
                    self._handle_failure(i, err)
            if not infos:
                weights = self.ps.get_weights.remote()
                continue
            weights = self.ps.apply_mean.remote(infos, *grads)
            frames += sum(i["frames"] for i in infos)
            for info in infos:
                self._episodes(frames, info["episodes"])
            self._collect_eval()
            self._maybe_evaluate(frames, weights)
            bar.update(frames, ret100=self._recent_return())
        return frames, weights

    def _episodes(self, frames: int, episodes: list[tuple[float, int]]) -> None:
        self.curve_train.extend((frames, float(ret)) for ret, _ in episodes)

    def _recent_return(self) -> float:
        """Mean return of the last 100 training episodes (0 before the first one ends)."""
        recent = self.curve_train[-100:]
        return float(np.mean([r for _, r in recent])) if recent else 0.0

    def _load_curve(self, frames: int) -> None:
        """A resumed run's curve continues the one it was resumed from, up to the checkpoint's frames
        (what came later is trained again)."""
        if not self.run_dir.exists("learning_curve.json"):
            return
        old = self.run_dir.read_json("learning_curve.json")
        self.curve_train = [(int(f), float(r)) for f, r in old.get("train", []) if f <= frames]
        self.curve_eval = [(int(f), float(r)) for f, r in old.get("eval", []) if f <= frames]

    def _save_curve(self) -> None:
        """learning_curve.png (training episode returns, their running mean over 100, greedy
        evaluations against frames) and the same series as learning_curve.json."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.run_dir.write_json("learning_curve.json", {"train": self.curve_train, "eval": self.curve_eval})
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        if self.curve_train:
            f, r = np.array(self.curve_train).T
            ax.scatter(f, r, s=3, alpha=0.25, color="tab:blue", label="training episode")
            c = np.concatenate([[0.0], np.cumsum(r)])
            n = np.minimum(np.arange(1, len(r) + 1), 100)
            run = (c[1:] - c[np.arange(1, len(r) + 1) - n]) / n  # running mean over the last ≤ 100
            ax.plot(f, run, color="tab:blue", label="training, mean of last 100")
        if self.curve_eval:
            f, r = np.array(self.curve_eval).T
            ax.plot(f, r, "o-", color="tab:red", label="greedy evaluation")
        if self.args.target_return is not None:
            ax.axhline(self.args.target_return, ls="--", color="grey", label="target")
        ax.set_xlabel("frames")
        ax.set_ylabel("return")
        ax.set_title(f"A3C {self.args.mode} {self.args.env}, {self.args.workers} workers")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        self.run_dir.write_bytes("learning_curve.png", buf.getvalue())

    def _save_policy(self, res: dict[str, Any]) -> None:
        version, flat = ray.get(res["weights_ref"])
        buf = io.BytesIO()
        torch.save({"model_config": model_config(self.args), "weights": np.array(flat), "version": version,
                    "eval_return_mean": res["mean"]}, buf)
        self.run_dir.write_bytes("policy.pt", buf.getvalue())

    def close(self) -> None:
        for w in self.workers:
            ray.kill(w, no_restart=True)
        ray.kill(self.ps, no_restart=True)


def prepare_run_dir(args: TrainArgs) -> RunDir:
    """Check the run-dir against --resume before anything starts (ConfigError otherwise)."""
    run_dir = RunDir(args.run_dir).ensure_writable()
    has_ckpt = bool(checkpoint.list_steps(run_dir))
    resolve_auto_resume(args, has_ckpt)
    if args.resume and not has_ckpt:
        raise ConfigError(f"--resume: no checkpoint in --run-dir {args.run_dir!r}")
    if not args.resume and has_ckpt:
        raise ConfigError(f"--run-dir {args.run_dir!r} already holds checkpoints: pass --resume (or --auto-resume) "
                          "or use a new run-dir")
    return run_dir


def train(args: TrainArgs) -> dict[str, Any]:
    """Run one training job end to end; returns (and writes) result.json's content."""
    run_dir = prepare_run_dir(args)
    run_dir.write_json("config.json", to_dict(args))
    require_gpus("--ps-gpus", args.ps_gpus, init_ray(num_cpus=math.ceil(args.workers * args.worker_cpus)))
    driver = Driver(args, run_dir)
    try:
        result = driver.run()
    finally:
        driver.close()
    run_dir.write_json("result.json", result)
    log.info("done: %s", {k: result[k] for k in ("frames", "wall_s", "eval_return_mean", "target_reached")})
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    args = parse(TrainArgs, argv, prog="dojo a3c train")
    try:
        prepare_run_dir(args)  # fail fast, before Ray starts
        return train(args)
    except ConfigError as exc:
        fail("dojo a3c train", str(exc))
    finally:
        shutdown_ray_if_local()


if __name__ == "__main__":
    main()

"""The ``ParameterServer`` actor: the one copy of the weights, the shared optimizer, the counters.

It applies gradients as they arrive (A3C) or averaged per round (A2C) with one optimizer
whose statistics are shared by all workers (RMSProp as in the paper, or Adam), versions
the weights (+1 per applied update), measures staleness (its version minus the version a
gradient was computed on) and can bound it (drop, or down-weight, gradients older than K).
It checkpoints weights + optimizer + counters every N updates; a restarted server (Ray
restarts the actor) or a resumed run restores the newest checkpoint.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any

import numpy as np
import torch

from services.a3c import metrics as M
from services.a3c.envs import make_env
from services.a3c.model import ActorCritic, get_flat, set_flat, set_flat_grad
from services.a3c.worker import was_restarted
from services.common import checkpoint
from services.common.metrics import MetricSet
from services.common.rundir import RunDir


class ParameterServer:
    """A Ray actor (``ray.remote(ParameterServer)``)."""

    def __init__(self, args: Any, run_id: str, resume: bool):
        torch.set_num_threads(1)
        torch.manual_seed(args.seed)
        self.args = args
        env = make_env(args.env, args.seed)
        self.model = ActorCritic(env.observation_space.shape, int(env.action_space.n), hidden=args.hidden, lstm=args.lstm)
        env.close()
        if args.ps_gpus > 0 and not torch.cuda.is_available():
            raise RuntimeError(f"--ps-gpus {args.ps_gpus:g}: Ray placed the parameter server on a GPU, but torch "
                               f"{torch.__version__} sees no CUDA device there (a CPU build of torch?)")
        self.device = torch.device("cuda" if args.ps_gpus > 0 else "cpu")
        self.model.to(self.device)
        params = self.model.parameters()
        if args.optimizer == "rmsprop":
            self.opt = torch.optim.RMSprop(params, lr=args.lr, alpha=args.rms_alpha, eps=args.rms_eps)
        else:
            self.opt = torch.optim.Adam(params, lr=args.lr, eps=args.rms_eps)
        self.run_dir = RunDir(args.run_dir)
        self.version = 0
        self.c: dict[str, float] = collections.defaultdict(float)  # counters, checkpointed
        self.returns: collections.deque[float] = collections.deque(maxlen=100)
        self.last_stats: dict[str, float] = {}
        self._fps_frames, self._fps_t = 0.0, time.monotonic()
        self.metrics = MetricSet(M.ALL, {"run": run_id, "env": args.env, "mode": args.mode})
        restarted = was_restarted()
        self.restored_from: int | None = None
        if resume or restarted:
            self._restore()
        if restarted:
            self.c["server_restarts"] += 1
            self.metrics.inc(M.SERVER_RESTARTS)
        self._weights = (self.version, get_flat(self.model))

    # --- state ---------------------------------------------------------------------------
    def _restore(self) -> None:
        found = checkpoint.load_latest(self.run_dir)
        if found is None:
            return
        step, state = found
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])  # moves state to the params' device
        self.version = state["version"]
        self.c.update(state["counters"])
        self.returns.extend(state["returns"])
        self.restored_from = step

    def save_checkpoint(self) -> str:
        state = {
            "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "version": self.version,
            "counters": dict(self.c),
            "returns": list(self.returns),
            "model_config": model_config(self.args),
        }
        self.c["checkpoints"] += 1
        return checkpoint.save(self.run_dir, self.version, state, keep=self.args.keep_checkpoints)

    def pid(self) -> int:
        return os.getpid()

    def get_weights(self) -> tuple[int, np.ndarray]:
        return self._weights

    def summary(self) -> dict[str, Any]:
        c = self.c
        applied = max(c["grads_applied"], 1)
        return {
            "version": self.version,
            "frames": int(c["frames"]),
            "episodes": int(c["episodes"]),
            "grads_applied": int(c["grads_applied"]),
            "grads_dropped": int(c["grads_dropped"]),
            "staleness_mean": c["staleness_sum"] / applied,
            "staleness_max": int(c["staleness_max"]),
            "train_return_mean_100": float(np.mean(self.returns)) if self.returns else float("nan"),
            "worker_restarts": int(c["worker_restarts"]),
            "server_restarts": int(c["server_restarts"]),
            "wall_s_before": c["wall_s"],
            "restored_from": self.restored_from,
            "device": str(self.device),
            **self.last_stats,
        }

    def note_worker_restart(self, wall_s: float) -> None:
        self.c["worker_restarts"] += 1
        self.metrics.inc(M.WORKER_RESTARTS)

    def note_wall(self, wall_s: float) -> None:
        self.c["wall_s"] = wall_s

    # --- updates -----------------------------------------------------------------------
    def apply_gradients(self, grad: np.ndarray, info: dict[str, Any]) -> tuple[int, np.ndarray]:
        """A3C: apply one worker's gradient now; hand back the (new) weights."""
        staleness = self.version - info["version"]
        scale = self._staleness_scale(staleness)
        if scale > 0:
            self._step([grad], scale)
        self._account([info], [max(staleness, 0)], applied=scale > 0)
        return self._weights

    def apply_mean(self, infos: list[dict[str, Any]], *grads: np.ndarray) -> tuple[int, np.ndarray]:
        """A2C: average the round's gradients (all computed on the current weights), one step."""
        self._step(list(grads), 1.0 / len(grads))
        self._account(infos, [self.version - 1 - i["version"] for i in infos], applied=True)
        return self._weights

    def _staleness_scale(self, staleness: int) -> float:
        k = self.args.max_staleness
        if k <= 0 or staleness <= k:
            return 1.0
        return 0.0 if self.args.stale_policy == "drop" else 1.0 / (1 + staleness - k)

    def _step(self, grads: list[np.ndarray], scale: float) -> None:
        g = grads[0] if len(grads) == 1 else np.sum(grads, axis=0)  # (P,)
        set_flat_grad(self.model, g * scale if scale != 1.0 else g)
        if self.args.lr_warmup:  # linear warm-up over the first updates (the version counts them)
            for group in self.opt.param_groups:
                group["lr"] = self.args.lr * min(1.0, (self.version + 1) / self.args.lr_warmup)
        self.opt.step()
        self.version += 1
        self._weights = (self.version, get_flat(self.model))
        if self.args.checkpoint_every > 0 and self.version % self.args.checkpoint_every == 0:
            self.save_checkpoint()

    def _account(self, infos: list[dict[str, Any]], staleness: list[int], applied: bool) -> None:
        m = self.metrics
        frames = sum(i["frames"] for i in infos)
        self.c["frames"] += frames
        m.inc(M.FRAMES, frames)
        for info in infos:
            for ret, _length in info["episodes"]:
                self.returns.append(ret)
                m.set(M.EPISODE_RETURN, ret)
            self.c["episodes"] += len(info["episodes"])
            m.inc(M.EPISODES, len(info["episodes"]))
        if applied:
            n = len(infos)
            self.c["grads_applied"] += n
            self.c["staleness_sum"] += sum(staleness)
            self.c["staleness_max"] = max(self.c["staleness_max"], *staleness)
            m.inc(M.GRADS_APPLIED, n)
            for s in staleness:
                m.observe(M.STALENESS, s)
            last = infos[-1]
            self.last_stats = {k: float(np.mean([i[k] for i in infos]))
                               for k in ("entropy", "value_loss", "policy_loss", "grad_norm")}
            m.set(M.ENTROPY, self.last_stats["entropy"])
            m.set(M.VALUE_LOSS, self.last_stats["value_loss"])
            m.set(M.POLICY_LOSS, self.last_stats["policy_loss"])
            m.set(M.GRAD_NORM, last["grad_norm"])
        else:
            self.c["grads_dropped"] += len(infos)
            m.inc(M.GRADS_DROPPED, len(infos))
        if self.returns:
            m.set(M.RETURN_MEAN_100, float(np.mean(self.returns)))
        now = time.monotonic()
        self._fps_frames += frames
        if now - self._fps_t >= 2.0:
            m.set(M.FPS, self._fps_frames / (now - self._fps_t))
            self._fps_frames, self._fps_t = 0.0, now


def model_config(args: Any) -> dict[str, Any]:
    return {"env": args.env, "hidden": args.hidden, "lstm": args.lstm}


def load_policy(state: dict[str, Any]) -> ActorCritic:
    """Rebuild the network of a checkpoint or policy file."""
    cfg = state["model_config"]
    env = make_env(cfg["env"], 0, train=False)
    model = ActorCritic(env.observation_space.shape, int(env.action_space.n), hidden=cfg["hidden"], lstm=cfg["lstm"])
    env.close()
    if "model" in state:
        model.load_state_dict(state["model"])
    else:
        set_flat(model, state["weights"])
    return model

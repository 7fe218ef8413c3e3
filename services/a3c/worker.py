"""The A3C learner math (k-step returns, loss) and the ``RolloutWorker`` actor.

A worker owns its environments and a local copy of the network. Each call of
``compute_gradients(weights)``: load the weights it was handed (if newer), act for
``t_max`` steps in each of its environments, compute k-step bootstrapped returns and the
loss, backpropagate locally, clip the gradient norm and return the flat gradient — tagged
with the weight version it was computed on, so the parameter server can measure staleness.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import ray
import torch
import torch.nn.functional as F

from services.a3c.envs import VecEnv, is_atari
from services.a3c.model import ActorCritic, flat_grad, set_flat


def nstep_returns(
    rewards: np.ndarray,
    values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    final_values: np.ndarray,
    bootstrap: np.ndarray,
    gamma: float,
    gae_lambda: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """k-step bootstrapped returns and advantages over a (T, N) rollout.

    rewards, values, terminated, truncated, final_values: (T, N); bootstrap: (N,) = V(s_T).
    A *terminated* step has no future (target r); a *truncated* step (time limit)
    bootstraps from V(final observation) (target r + γ·V(s_final)); either ends the chain.
    With ``gae_lambda`` = 1 (the paper) ``returns[t] = Σ_k γ^k r_{t+k} + γ^(T-t) V(s_T)``;
    < 1 gives GAE(λ) advantages. Returns (returns, advantages), both (T, N).
    """
    T = rewards.shape[0]
    adv = np.zeros_like(values, dtype=np.float32)
    last = np.zeros_like(bootstrap, dtype=np.float32)
    for t in reversed(range(T)):
        next_v = bootstrap if t == T - 1 else values[t + 1]
        next_v = np.where(truncated[t], final_values[t], next_v)
        next_v = np.where(terminated[t], 0.0, next_v)
        done = np.logical_or(terminated[t], truncated[t])
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * gae_lambda * np.where(done, 0.0, last)
        adv[t] = last
    return (adv + values).astype(np.float32), adv


def a3c_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    returns: torch.Tensor,
    advantages: torch.Tensor,
    value_coef: float,
    entropy_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L = −mean(A·log π(a|s)) + α·½·mean((R − V)²) − β·mean(H(π(·|s))).

    logits (B, A), values (B,), actions (B,), returns (B,), advantages (B,) (treated as constants).
    """
    logp = F.log_softmax(logits, dim=-1)  # (B, A)
    logp_a = logp.gather(1, actions.unsqueeze(1)).squeeze(1)  # (B,)
    entropy = -(logp.exp() * logp).sum(-1).mean()
    policy_loss = -(advantages.detach() * logp_a).mean()
    value_loss = 0.5 * (returns - values).pow(2).mean()
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    stats = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item()}
    return loss, stats


def sample_actions(logits: torch.Tensor) -> torch.Tensor:
    """Sample a ~ softmax(logits) with the Gumbel-max trick (cheaper than torch.distributions)."""
    u = torch.rand_like(logits).clamp_(1e-12, 1.0)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


def was_restarted() -> bool:
    """True inside an actor that Ray restarted after a crash."""
    import warnings

    if not ray.is_initialized():
        return False
    with warnings.catch_warnings():  # Ray 2.60 warns about its own internal actor_id use
        warnings.simplefilter("ignore")
        try:
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
        except AssertionError:  # not inside an actor (e.g. a driver building the class directly)
            return False


class RolloutWorker:
    """A Ray actor (``ray.remote(RolloutWorker)``): environments + a local network copy."""

    def __init__(self, args: Any, index: int):
        torch.set_num_threads(1)
        self.args, self.index = args, index
        seed = args.seed * 1000 + index * 97 + 1
        if was_restarted():
            seed += 10_007 * int(time.time()) % 100_003  # a restarted worker explores anew
        torch.manual_seed(seed)
        self.env = VecEnv(args.env, args.envs_per_worker, seed=seed, train=True)
        self.model = ActorCritic(self.env.observation_space.shape, int(self.env.action_space.n),
                                 hidden=args.hidden, lstm=args.lstm)
        self.clip_rewards = args.clip_rewards
        self.frame_skip = 4 if is_atari(args.env) else 1
        self.obs = self.env.reset()
        self.state = self.model.initial_state(self.env.n)
        self.starts = np.ones(self.env.n, dtype=bool)
        self.version = -1

    def pid(self) -> int:
        return os.getpid()

    @ray.method(num_returns=2)
    def compute_gradients(self, weights: tuple[int, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
        version, flat = weights
        if version != self.version:
            set_flat(self.model, flat)
            self.version = version
        a, model, env = self.args, self.model, self.env
        T, N = a.t_max, env.n
        obs_buf = np.empty((T, N, *self.obs.shape[1:]), dtype=self.obs.dtype)  # (T, N, *obs)
        act_buf = np.empty((T, N), dtype=np.int64)
        rew_buf = np.empty((T, N), dtype=np.float32)
        val_buf = np.empty((T, N), dtype=np.float32)
        term_buf = np.zeros((T, N), dtype=bool)
        trunc_buf = np.zeros((T, N), dtype=bool)
        start_buf = np.empty((T, N), dtype=bool)
        final_v = np.zeros((T, N), dtype=np.float32)
        state0 = self.state if self.state is None else (self.state[0].detach(), self.state[1].detach())
        episodes: list[tuple[float, int]] = []
        with torch.no_grad():
            for t in range(T):
                obs_buf[t], start_buf[t] = self.obs, self.starts
                logits, value, next_state = model(torch.from_numpy(self.obs), self.state)
                action = sample_actions(logits)
                obs, rew, term, trunc, final_obs, eps = env.step(action.numpy())
                act_buf[t], val_buf[t], term_buf[t], trunc_buf[t] = action.numpy(), value.numpy(), term, trunc
                rew_buf[t] = np.sign(rew) if self.clip_rewards else rew
                cut = np.flatnonzero(trunc & ~term)  # time limit: bootstrap from V(s_final)
                if len(cut):
                    fo = torch.from_numpy(np.stack([final_obs[i] for i in cut]))
                    st = None if next_state is None else (next_state[0][cut], next_state[1][cut])
                    final_v[t, cut] = model(fo, st)[1].numpy()
                done = term | trunc
                if next_state is not None and done.any():
                    keep = torch.from_numpy(~done).float().unsqueeze(-1)
                    next_state = (next_state[0] * keep, next_state[1] * keep)
                self.obs, self.state, self.starts = obs, next_state, done
                episodes.extend(eps)
            bootstrap = model(torch.from_numpy(self.obs), self.state)[1].numpy()  # (N,)
        returns, adv = nstep_returns(rew_buf, val_buf, term_buf, trunc_buf, final_v, bootstrap, a.gamma, a.gae_lambda)

        logits, values = model.unroll(torch.from_numpy(obs_buf), state0, torch.from_numpy(start_buf))
        loss, stats = a3c_loss(
            logits.reshape(T * N, -1), values.reshape(-1), torch.from_numpy(act_buf).reshape(-1),
            torch.from_numpy(returns).reshape(-1), torch.from_numpy(adv).reshape(-1),
            a.value_coef, a.entropy_coef,
        )
        model.zero_grad(set_to_none=False)
        loss.backward()
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), a.max_grad_norm))
        info = {
            "version": version,
            "frames": T * N * self.frame_skip,  # Atari: agent steps x 4 (the paper's frame count)
            "episodes": episodes,
            "worker": self.index,
            **stats,
        }
        return flat_grad(model), info

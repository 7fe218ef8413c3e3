"""Environments for A3C: any Gymnasium id; ALE Atari ids get the standard DQN/A3C preprocessing.

Atari stack (Mnih et al. 2015/2016): no-op reset (≤30), frame skip 4 with a max-pool over
the last two frames, 84×84 grayscale, FIRE on reset where the game needs it, episodic life
in training (a lost life ends the *training* episode, the game goes on), frame stack 4.
Rewards are clipped to {-1, 0, 1} by the worker, so episode returns stay in game units.

``VecEnv`` steps several environments in one process with same-step auto-reset and hands
back the true final observation of truncated episodes (needed to bootstrap them).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from services.common.config import ConfigError


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def check_env_id(env_id: str) -> None:
    """ConfigError naming the id when Gymnasium does not know it."""
    if is_atari(env_id):
        import ale_py

        gym.register_envs(ale_py)
    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"--env {env_id!r}: unknown Gymnasium environment ({exc})") from exc


class FireReset(gym.Wrapper):
    """Press FIRE after reset for games that wait for it (Breakout, ...)."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the training episode (``info['life_loss']``); reset continues the game."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives and not self.game_over:
            terminated = True
            info = dict(info, life_loss=True)
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # continue the same game with a no-op step
            obs, _, _, _, info = self.env.step(0)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


def make_env(env_id: str, seed: int, train: bool = True) -> gym.Env:
    """One environment; Atari ids get the full preprocessing stack."""
    check_env_id(env_id)
    if is_atari(env_id):
        env = gym.make(env_id, frameskip=1, repeat_action_probability=0.0)  # the paper: no sticky actions
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
        if "FIRE" in env.unwrapped.get_action_meanings():
            env = FireReset(env)
        if train:
            env = EpisodicLife(env)
        env = gym.wrappers.FrameStackObservation(env, 4)  # (4, 84, 84) uint8
    else:
        env = gym.make(env_id)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ConfigError(f"--env {env_id!r}: A3C here needs a Discrete action space, got {env.action_space}")
    env.action_space.seed(seed)
    return env


class VecEnv:
    """``n`` environments stepped in lock-step with same-step auto-reset.

    ``step`` returns (obs, reward, terminated, truncated, final_obs, episodes) where
    ``final_obs[i]`` is the last observation of an episode that just ended in env i
    (None otherwise) and ``episodes`` lists (return, length) of *games* that ended
    (a lost Atari life is not a finished game).
    """

    def __init__(self, env_id: str, n: int, seed: int, train: bool = True):
        self.envs = [make_env(env_id, seed + i, train) for i in range(n)]
        self.n = n
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self._seed = seed
        self._ret = np.zeros(n)
        self._len = np.zeros(n, dtype=np.int64)

    def reset(self) -> np.ndarray:
        self._ret[:] = 0
        self._len[:] = 0
        return np.stack([np.asarray(e.reset(seed=self._seed + i)[0]) for i, e in enumerate(self.envs)])

    def step(self, actions: np.ndarray):
        obs, rew = [], np.zeros(self.n, dtype=np.float32)
        term = np.zeros(self.n, dtype=bool)
        trunc = np.zeros(self.n, dtype=bool)
        final_obs: list[np.ndarray | None] = [None] * self.n
        episodes: list[tuple[float, int]] = []
        for i, (env, a) in enumerate(zip(self.envs, actions, strict=True)):
            o, r, te, tr, info = env.step(int(a))
            rew[i], term[i], trunc[i] = r, te, tr
            self._ret[i] += r
            self._len[i] += 1
            if te or tr:
                final_obs[i] = np.asarray(o)
                if not info.get("life_loss", False):
                    episodes.append((float(self._ret[i]), int(self._len[i])))
                    self._ret[i], self._len[i] = 0.0, 0
                o, _ = env.reset()
            obs.append(np.asarray(o))
        return np.stack(obs), rew, term, trunc, final_obs, episodes

    def close(self) -> None:
        for e in self.envs:
            e.close()

"""Environment plumbing: Atari preprocessing, frame stacking, vector env auto-reset."""

import numpy as np

from services.a3c.envs import VecEnv, make_env


def test_pong_preprocessing_shapes_and_frame_stack():
    env = make_env("ALE/Pong-v5", seed=0, train=True)
    obs, _ = env.reset(seed=0)
    obs = np.asarray(obs)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.action_space.n == 6
    prev = obs
    for _ in range(5):
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        obs = np.asarray(obs)
        assert obs.shape == (4, 84, 84)
        np.testing.assert_array_equal(obs[:3], prev[1:])  # the stack shifts by one frame
        prev = obs
    assert obs[-1].max() > 0  # a real grayscale screen, not zeros
    env.close()


def test_vecenv_reports_finished_episodes_and_final_obs():
    env = VecEnv("CartPole-v1", 4, seed=0)
    obs = env.reset()
    assert obs.shape == (4, 4)
    finished, steps = [], 0
    while len(finished) < 6:
        obs, rew, term, trunc, final_obs, eps = env.step(np.zeros(4, dtype=np.int64))  # always push left: falls fast
        steps += 1
        for i in np.flatnonzero(term | trunc):
            assert final_obs[i] is not None and final_obs[i].shape == (4,)
        finished += eps
    # pushing left always ends CartPole in ~8-12 steps with return = length
    assert all(ret == length and 5 <= length <= 20 for ret, length in finished)
    env.close()

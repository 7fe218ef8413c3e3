"""RLlib PPO on CartPole-v1 with RLlib's own tuned settings, until the training return reaches a target.

    python bench/rllib_ppo_cartpole.py --seed 0 --target 475

Settings from RLlib's `cartpole_ppo.py` example (lr 3e-4, 6 epochs, vf_loss_coeff 0.01,
one 32-unit linear hidden layer with shared value layers), 2 env runners.
Prints one JSON line: wall_s (whole process), timesteps, return.
"""

from __future__ import annotations

import argparse
import json
import time

T0 = time.monotonic()

import ray  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", type=float, default=475.0)
    p.add_argument("--max-timesteps", type=int, default=1_000_000)
    a = p.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=2)
        .training(lr=0.0003, num_epochs=6, vf_loss_coeff=0.01)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32], fcnet_activation="linear",
                                                   vf_share_layers=True))
        .debugging(seed=a.seed)
    )
    algo = config.build_algo()
    ret, steps = float("nan"), 0
    while steps < a.max_timesteps:
        r = algo.train()
        ret = r["env_runners"].get("episode_return_mean", float("nan"))
        steps = r["num_env_steps_sampled_lifetime"]
        if ret >= a.target:
            break
    algo.stop()
    ray.shutdown()
    print(json.dumps({"algo": "rllib-ppo", "seed": a.seed, "wall_s": time.monotonic() - T0, "timesteps": steps,
                      "train_return": ret, "reached": bool(ret >= a.target)}))


if __name__ == "__main__":
    main()

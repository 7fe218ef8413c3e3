"""Greedy evaluation of an A3C policy, and ``dojo a3c eval --run-dir D --episodes N``."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from services.a3c.envs import VecEnv
from services.a3c.model import ActorCritic
from services.common import checkpoint
from services.common.config import ConfigError, parse, require
from services.common.progress import log, setup_logging
from services.common.rundir import RunDir

EVAL_SEED = 1_000_003


def greedy_returns(model: ActorCritic, env_id: str, episodes: int, seed: int = EVAL_SEED) -> list[float]:
    """Play ``episodes`` whole games with argmax actions (one per environment, batched)."""
    env = VecEnv(env_id, episodes, seed=seed, train=False)
    obs = env.reset()
    state = model.initial_state(episodes)
    returns = np.zeros(episodes)
    done = np.zeros(episodes, dtype=bool)
    with torch.no_grad():
        while not done.all():
            logits, _, state = model(torch.from_numpy(obs), state)
            obs, rew, term, trunc, _, _ = env.step(logits.argmax(-1).numpy())
            returns += np.where(done, 0.0, rew)
            done |= term | trunc
            if state is not None:
                keep = torch.from_numpy(~(term | trunc)).float().unsqueeze(-1)
                state = (state[0] * keep, state[1] * keep)
    env.close()
    return returns.tolist()


def evaluate_weights(model_config: dict, weights: tuple[int, np.ndarray], episodes: int) -> dict:
    """Ray task body: rebuild the network from flat weights and evaluate it greedily."""
    torch.set_num_threads(1)
    from services.a3c.server import load_policy

    model = load_policy({"model_config": model_config, "weights": weights[1]})
    t0 = time.monotonic()
    rets = greedy_returns(model, model_config["env"], episodes)
    return {"version": weights[0], "returns": rets, "mean": float(np.mean(rets)), "eval_s": time.monotonic() - t0}


def load_run_policy(run_dir: RunDir) -> tuple[ActorCritic, dict]:
    """The policy a run ended with (policy.pt), else its newest checkpoint."""
    from services.a3c.server import load_policy

    if run_dir.exists("policy.pt"):
        import io

        state = torch.load(io.BytesIO(run_dir.read_bytes("policy.pt")), weights_only=False)
    else:
        found = checkpoint.load_latest(run_dir)
        if found is None:
            raise ConfigError(f"--run-dir {run_dir.uri!r} holds no policy.pt and no checkpoint")
        state = found[1]
    return load_policy(state), state["model_config"]


@dataclasses.dataclass
class EvalArgs:
    """Evaluate a trained A3C policy greedily."""

    run_dir: str
    """Run directory of a finished (or checkpointed) `dojo a3c train`."""
    episodes: int = 20
    """Number of evaluation episodes."""
    seed: int = EVAL_SEED
    """Seed of the evaluation environments."""

    def validate(self) -> None:
        require(self.episodes >= 1, f"--episodes must be >= 1 (got {self.episodes})")
        require(RunDir(self.run_dir).exists(), f"--run-dir {self.run_dir!r} does not exist")


def main(argv: list[str] | None = None) -> dict:
    setup_logging()
    args = parse(EvalArgs, argv, prog="dojo a3c eval")
    run_dir = RunDir(args.run_dir)
    try:
        model, cfg = load_run_policy(run_dir)
    except ConfigError as exc:
        from services.common.config import fail

        fail("dojo a3c eval", str(exc))
    rets = greedy_returns(model, cfg["env"], args.episodes, args.seed)
    out = {"env": cfg["env"], "eval_return_mean": float(np.mean(rets)), "eval_return_std": float(np.std(rets)),
           "eval_return_min": float(np.min(rets)), "eval_episodes": args.episodes}
    run_dir.write_json("eval.json", out)
    log.info("greedy evaluation over %d episodes: mean %.1f (min %.1f)", args.episodes, out["eval_return_mean"],
             out["eval_return_min"])
    print(out)
    return out


if __name__ == "__main__":
    main()

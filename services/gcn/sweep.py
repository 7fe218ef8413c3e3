"""``dojo gcn sweep``: a Ray Tune sweep over the GCN's hyper-parameters.

Each trial rebuilds ``services.gcn.train.TrainArgs`` from its config (unknown keys fail loudly),
trains on the chosen graph and reports ``accuracy`` (median over the trial's seeds, on the
unlabelled nodes) — the metric the sweep maximises. Progress is exported as ``dojo_sweep_*``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

from services.common.config import ConfigError, fail, parse, rebuild, require, to_dict
from services.common.progress import log, setup_logging
from services.common.ray_utils import init_ray, shutdown_ray_if_local
from services.common.rundir import RunDir
from services.gcn.train import TrainArgs, run


@dataclasses.dataclass
class SweepArgs:
    """Random search over model (spectral/spatial), hidden units, learning rate, dropout, weight decay."""

    graph: Literal["karate", "sbm"] = "sbm"
    """Graph to classify."""
    samples: int = 8
    """Number of trials."""
    seeds: int = 1
    """Trainings per trial (median reported)."""
    epochs: int = 100
    """Epochs per training."""
    sbm_nodes: int = 1000
    """SBM: number of nodes."""
    run_dir: str = "runs/gcn-sweep"
    """Tune's storage path (local path or URI) and the sweep's result.json."""
    max_concurrent: int = 2
    """Trials running at once (each takes one CPU)."""
    seed: int = 0
    """Search seed."""

    def validate(self) -> None:
        require(self.samples >= 1, f"--samples must be >= 1, got {self.samples}")
        require(self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}")
        require(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        require(self.max_concurrent >= 1, f"--max-concurrent must be >= 1, got {self.max_concurrent}")
        require(self.sbm_nodes >= 50, f"--sbm-nodes must be >= 50, got {self.sbm_nodes}")


def trainable(config: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    args = rebuild(TrainArgs, {**config, "baseline": False})
    r = run(args)
    return {"accuracy": r["accuracy"], "epochs_per_s": r["epochs_per_s"]}


def sweep(args: SweepArgs) -> dict[str, Any]:
    from ray import tune

    from services.sweeps.tune_runner import SweepMetrics

    space = {
        "graph": args.graph, "seeds": args.seeds, "epochs": args.epochs, "sbm_nodes": args.sbm_nodes,
        "model": tune.choice(["spectral", "spatial"]),
        "hidden": tune.choice([8, 16, 32]),
        "lr": tune.loguniform(3e-3, 3e-2),
        "dropout": tune.uniform(0.0, 0.7),
        "weight_decay": tune.loguniform(1e-5, 1e-3),
    }
    rebuild(TrainArgs, {k: v for k, v in space.items() if not hasattr(v, "sample")})  # fail before Ray on typos
    rd = RunDir(args.run_dir).ensure_writable()
    storage = rd.uri if "://" in rd.uri else os.path.abspath(rd.uri)
    name = f"gcn-{args.graph}"
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(metric="accuracy", mode="max", num_samples=args.samples,
                                    max_concurrent_trials=args.max_concurrent,
                                    search_alg=tune.search.BasicVariantGenerator(random_state=args.seed)),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                  callbacks=[SweepMetrics("gcn", name, "accuracy", "max")]),
    )
    grid = tuner.fit()
    best = grid.get_best_result()
    errors = sum(r.error is not None for r in grid)
    result = {"graph": args.graph, "trials": len(grid), "errors": errors, "best_accuracy": best.metrics["accuracy"],
              **{f"best_{k}": best.config[k] for k in ("model", "hidden", "lr", "dropout", "weight_decay")}}
    rd.write_json("config.json", to_dict(args))
    rd.write_json("result.json", result)
    log.info("best of %d trials: %s", len(grid), result)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    args = parse(SweepArgs, argv, prog="dojo gcn sweep")
    try:
        RunDir(args.run_dir).ensure_writable()
    except ConfigError as exc:
        fail("dojo gcn sweep", str(exc))
    init_ray(num_cpus=args.max_concurrent)
    try:
        return sweep(args)
    finally:
        shutdown_ray_if_local()


if __name__ == "__main__":
    main()

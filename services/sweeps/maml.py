"""``dojo sweep maml``: Ray Tune over the MAML family's inner lr, inner steps, meta lr and meta-batch size.

Every trial runs ``services.maml.train.Trainer`` with a ``TrainArgs`` rebuilt from its
config; it reports the meta-validation metric after every validation (ASHA compares
trials on it) and checkpoints its whole state through Tune, so a resumed sweep
continues each interrupted trial where it left off. A trial that runs to the end also
reports its meta-test mean and 95% CI on ``--eval-tasks`` held-out tasks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from ray import tune

from services.common.config import ConfigError, fail, parse, rebuild, require, to_dict
from services.common.progress import setup_logging
from services.common.ray_utils import init_ray, shutdown_ray_if_local
from services.common.rundir import RunDir
from services.maml.train import TrainArgs, Trainer, build_family
from services.sweeps import tune_runner
from services.sweeps.tune_runner import SchedulerArgs, SweepSpec


@dataclasses.dataclass
class MamlSweepArgs(SchedulerArgs):
    """Sweep MAML / first-order MAML / Reptile hyperparameters with Ray Tune."""

    algo: Literal["maml", "fomaml", "reptile"] = "maml"
    """Meta-learner of every trial."""
    task: Literal["sinusoid", "fewshot"] = "sinusoid"
    """Task family (see dojo maml train --help)."""
    ways: int = 5
    """N: classes per few-shot task."""
    shots: int | None = None
    """K: support examples per class/task (default 1 for few-shot, 10 for sinusoid)."""
    iterations: int | None = None
    """Meta-iterations of a full-length trial (default: 3000 sinusoid, 600 few-shot)."""
    reports: int = 6
    """Validations (= Tune reports = ASHA rungs' time unit) per full-length trial."""
    val_tasks: int = 100
    """Meta-validation tasks per report."""
    eval_tasks: int = 600
    """Meta-test tasks scored at the end of a trial that runs to completion."""
    cache_dir: str | None = None
    """Glyph benchmark cache (see dojo maml train)."""
    run_dir: str = "runs/sweep-maml"
    """Where config.json, result.json and tune/ (experiment state, trials, checkpoints) go."""
    resume: bool = False
    """Continue the interrupted sweep in --run-dir (its saved search space and settings are used)."""
    auto_resume: bool = False
    """Resume when --run-dir already holds a sweep and start afresh when it holds none, so the same command can
    simply be run again after a crash (the Helm chart's RayJobs pass it: a retried job resumes)."""

    def validate(self) -> None:
        tune_runner.validate_scheduler_args(self)
        if self.shots is None:
            self.shots = 10 if self.task == "sinusoid" else 1
        if self.iterations is None:
            self.iterations = 3000 if self.task == "sinusoid" else 600
        require(self.iterations >= 1, f"--iterations must be >= 1 (got {self.iterations})")
        require(1 <= self.reports <= self.iterations, f"--reports must be in [1, --iterations] (got {self.reports})")
        require(self.eval_tasks >= 2, f"--eval-tasks must be >= 2 (got {self.eval_tasks})")
        require(self.val_tasks >= 1, f"--val-tasks must be >= 1 (got {self.val_tasks})")


def search_space(algo: str, task: str) -> dict[str, Any]:
    """The four swept hyperparameters, centred on each algorithm's published defaults
    (Reptile's meta lr is its outer step size ε, not an Adam learning rate)."""
    reptile = algo == "reptile"
    if task == "sinusoid":
        inner_lr = tune.loguniform(0.003, 0.05)
        meta_batch = tune.choice([10, 25, 50])
    else:
        inner_lr = tune.loguniform(0.03, 0.5) if reptile else tune.loguniform(0.1, 1.0)
        meta_batch = tune.choice([4, 8, 16])
    return {
        "inner_lr": inner_lr,
        "inner_steps": tune.choice([3, 5, 8] if reptile else [1, 2, 3]),
        "meta_lr": tune.uniform(0.2, 1.0) if reptile else tune.loguniform(3e-4, 3e-3),
        "meta_batch": meta_batch,
    }


def constants(a: MamlSweepArgs) -> dict[str, Any]:
    """The TrainArgs fields every trial shares."""
    return {
        "algo": a.algo, "task": a.task, "ways": a.ways, "shots": a.shots, "iterations": a.iterations,
        "val_every": math.ceil(a.iterations / a.reports), "val_tasks": a.val_tasks, "eval_tasks": a.eval_tasks,
        "baselines": False, "cache_dir": a.cache_dir, "seed": a.seed,
        "threads": max(1, int(a.cpus_per_trial)), "device": "cuda" if a.gpus_per_trial > 0 else "cpu",
    }


def trainable(config: dict[str, Any]) -> None:
    """One trial: rebuild TrainArgs, restore from Tune's checkpoint if any, train, report."""
    args = tune_runner.trial_args(TrainArgs, config)
    trainer = Trainer(args, run_name=tune.get_context().get_trial_name())
    state = tune_runner.restore_state()
    if state is not None:
        trainer.load_state_dict(state)

    def on_validate(report: dict[str, Any], is_last: bool) -> None:
        if is_last:
            report.update(trainer.test(with_baselines=False))
        tune_runner.report(report, trainer.state_dict())

    trainer.run(on_validate)


def spec_for(a: MamlSweepArgs) -> SweepSpec:
    metric = "val_mse" if a.task == "sinusoid" else "val_accuracy"
    return SweepSpec(
        family="maml", trainable=trainable, param_space={**constants(a), **search_space(a.algo, a.task)},
        metric=metric, mode="min" if a.task == "sinusoid" else "max",
        max_t=math.ceil(a.iterations / math.ceil(a.iterations / a.reports)),
        extra_result_keys=("meta_test_mean", "meta_test_ci95", "meta_test_tasks"),
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    prog = "dojo sweep maml"
    args = parse(MamlSweepArgs, argv, prog=prog)
    try:
        run_dir = RunDir(args.run_dir).ensure_writable()
        tune_runner.check_resume(run_dir, args)
        probe = rebuild(TrainArgs, constants(args))  # a bad combination fails here, not in every trial
        if args.task == "fewshot":
            build_family(probe)  # render the glyph cache once, before trials start
    except ConfigError as exc:
        fail(prog, str(exc))
    if not args.resume:
        run_dir.write_json("config.json", to_dict(args))
    init_ray(num_cpus=math.ceil(args.cpus_per_trial))
    try:
        return tune_runner.run_sweep(spec_for(args), args, run_dir, args.resume)
    finally:
        shutdown_ray_if_local()


if __name__ == "__main__":
    main()

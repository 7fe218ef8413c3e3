"""The Ray Tune plumbing that every sweep family (MAML, GAN, ...) shares.

A family module supplies a ``SweepSpec``: the trainable, the search space, the metric
and the constant overrides of its training ``Args``. This module does the rest:

* each trial rebuilds the family's typed Args dataclass from its config with
  ``services.common.config.rebuild`` (an unknown key fails loudly);
* ASHA (early stopping of poor trials) or no scheduler;
* results, trial checkpoints and the experiment state live under ``<run-dir>/tune``;
  ``--resume`` continues an interrupted sweep with ``Tuner.restore`` (finished trials
  are kept, running ones restart from their last checkpoint, pending ones start);
* ``result.json`` in the run-dir: best_metric, metric_name, mode, trials, wall_s and the
  best trial's config as flat ``best_config.<name>`` keys;
* ``dojo_sweep_*`` metrics from a Tune callback in the driver.

Inside a trial, ``report(metrics, state)`` hands Tune the metrics and a checkpoint of
``state`` (any torch-serialisable dict); ``restore_state()`` gives it back after a restart.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator

from services.common.config import ConfigError, rebuild, require, resolve_auto_resume
from services.common.metrics import MetricSet
from services.common.progress import log
from services.common.rundir import RunDir
from services.sweeps.metrics import ALL as ALL_METRICS
from services.sweeps.metrics import BEST_METRIC, TRIAL_RESULTS, TRIALS_FINISHED

T = TypeVar("T")

EXPERIMENT = "tune"  # <run-dir>/tune holds Tune's experiment state, trials and checkpoints
STATE_FILE = "state.pt"
# Checkpoints kept per trial: 2, not 1. Tune deletes a trial's older checkpoints when it registers a new one and
# snapshots the experiment state just after; a sweep killed in between resumes from a snapshot that names the
# previous checkpoint, which must still exist (with 1: "Could not recover from checkpoint as it does not exist on
# storage anymore" after a SIGKILL in tests/sweeps/test_gan_sweep.py).
KEEP_CHECKPOINTS = 2



@dataclasses.dataclass
class SchedulerArgs:
    """The sweep-level knobs every family shares (a family's SweepArgs inherits them)."""

    scheduler: Literal["asha", "none"] = "asha"
    """asha = stop poor trials early (successive halving); none = run every trial to the end."""
    num_samples: int = 8
    """Trials (configurations drawn from the search space)."""
    grace_period: int = 2
    """ASHA: reports a trial makes before it can be stopped."""
    reduction_factor: int = 3
    """ASHA: keep the best 1/reduction_factor of the trials at each rung."""
    cpus_per_trial: float = 1.0
    """Logical CPUs reserved per trial (also its torch thread count)."""
    gpus_per_trial: float = 0.0
    """GPUs per trial (fractions share a GPU); > 0 trains on CUDA."""
    max_concurrent: int = 0
    """Trials running at once (0 = as many as the cluster's resources allow)."""
    seed: int = 0
    """Seed of the search-space sampler (and of each trial's training)."""


def validate_scheduler_args(a: Any) -> None:
    require(a.num_samples >= 1, f"--num-samples must be >= 1 (got {a.num_samples})")
    require(a.grace_period >= 1, f"--grace-period must be >= 1 (got {a.grace_period})")
    require(a.reduction_factor >= 2, f"--reduction-factor must be >= 2 (got {a.reduction_factor})")
    require(a.cpus_per_trial > 0, f"--cpus-per-trial must be > 0 (got {a.cpus_per_trial})")
    require(a.gpus_per_trial >= 0, f"--gpus-per-trial must be >= 0 (got {a.gpus_per_trial})")
    require(a.max_concurrent >= 0, f"--max-concurrent must be >= 0 (got {a.max_concurrent})")


@dataclasses.dataclass
class SweepSpec:
    """What a family hands to ``run_sweep``."""

    family: str  # "maml", "gan", ...
    trainable: Callable[[dict[str, Any]], None]
    param_space: dict[str, Any]  # constants and tune.* distributions, keys = fields of the Args dataclass
    metric: str  # the key each trial reports and the sweep optimises
    mode: Literal["min", "max"]
    max_t: int  # reports per full-length trial (ASHA's horizon, in training_iteration units)
    extra_result_keys: tuple[str, ...] = ()  # copied from the best trial's last result into result.json


def trial_args(cls: type[T], config: dict[str, Any]) -> T:
    """The family's Args for this trial (one source of truth with the CLI)."""
    return rebuild(cls, dict(config))


def report(metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
    """Report metrics to Tune, with a checkpoint of ``state`` when given."""
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        torch.save(state, os.path.join(d, STATE_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def restore_state() -> dict[str, Any] | None:
    """The state saved by this trial's last ``report``, or None on a fresh start."""
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=False)


def experiment_path(run_dir: RunDir) -> str:
    return run_dir.path(EXPERIMENT)


def check_resume(run_dir: RunDir, args: Any) -> None:
    """Settle ``args.resume`` (--auto-resume: whether there is a sweep to resume); ConfigError when --resume finds
    nothing, or a fresh sweep would overwrite one."""
    exists = run_dir.exists(EXPERIMENT) and tune.Tuner.can_restore(
        experiment_path(run_dir), storage_filesystem=None if run_dir.is_local else run_dir.fs)
    resolve_auto_resume(args, exists)
    resume = args.resume
    if resume and not exists:
        raise ConfigError(f"--resume: no sweep to resume in --run-dir {run_dir.uri!r}")
    if not resume and run_dir.exists(EXPERIMENT):
        raise ConfigError(f"--run-dir {run_dir.uri!r} already holds a sweep: pass --resume (or --auto-resume) or "
                          "use a new run-dir")


class SweepMetrics(tune.Callback):
    """Tune callback (driver side) exporting the dojo_sweep_* metrics. It is pickled with the
    experiment state (tuner.pkl), so the live Ray metric objects are created lazily."""

    def __init__(self, family: str, sweep: str, metric: str, mode: str):
        self.family, self.sweep, self.metric, self.mode = family, sweep, metric, mode
        self.best: float | None = None
        self._metrics: MetricSet | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_metrics": None}

    @property
    def metrics(self) -> MetricSet:
        if self._metrics is None:
            self._metrics = MetricSet(ALL_METRICS, {"sweep": self.sweep, "family": self.family})
        return self._metrics

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.metrics.inc(TRIAL_RESULTS)
        v = result.get(self.metric)
        if isinstance(v, int | float) and math.isfinite(v):
            if self.best is None or (v < self.best if self.mode == "min" else v > self.best):
                self.best = float(v)
                self.metrics.set(BEST_METRIC, self.best)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.metrics.inc(TRIALS_FINISHED, tags={"status": "completed"})

    def on_trial_error(self, iteration, trials, trial, **info):
        self.metrics.inc(TRIALS_FINISHED, tags={"status": "error"})


def run_sweep(spec: SweepSpec, sweep_args: Any, run_dir: RunDir, resume: bool) -> dict[str, Any]:
    """Run (or resume) the sweep on the current Ray cluster; write and return result.json's content."""
    a = sweep_args
    t0 = time.monotonic()
    # Each trial checkpoint forces an experiment-state snapshot (what makes a killed sweep resumable
    # from its latest checkpoints); Tune would warn about that on every report.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = tune.with_resources(spec.trainable, {"cpu": a.cpus_per_trial, "gpu": a.gpus_per_trial})
    fs = None if run_dir.is_local else run_dir.fs
    sweep_name = run_dir.root.rstrip("/").split("/")[-1]
    callbacks = [SweepMetrics(spec.family, sweep_name, spec.metric, spec.mode)]
    if resume:  # the search space, scheduler and RunConfig (callbacks included) come from the saved state
        log.info("resuming the sweep in %s", experiment_path(run_dir))
        tuner = tune.Tuner.restore(experiment_path(run_dir), trainable, resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=fs)
    else:
        scheduler = None
        if a.scheduler == "asha":
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=spec.max_t,
                                      grace_period=min(a.grace_period, spec.max_t),
                                      reduction_factor=a.reduction_factor)
        tuner = tune.Tuner(
            trainable,
            param_space=spec.param_space,
            tune_config=tune.TuneConfig(
                metric=spec.metric, mode=spec.mode, num_samples=a.num_samples, scheduler=scheduler,
                max_concurrent_trials=a.max_concurrent or None,
                search_alg=BasicVariantGenerator(random_state=a.seed),
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=run_dir.root if run_dir.is_local else run_dir.uri,
                storage_filesystem=None,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                failure_config=tune.FailureConfig(max_failures=1),
                callbacks=callbacks,
                verbose=1,
            ),
        )
    grid = tuner.fit()
    result = summarize(grid, spec)
    result["wall_s"] = time.monotonic() - t0
    result["resumed"] = int(bool(resume))
    run_dir.write_json("result.json", result)
    log.info("sweep done: best %s = %s over %d trials", spec.metric, result["best_metric"], result["trials"])
    return result


def summarize(grid, spec: SweepSpec) -> dict[str, Any]:
    """Flat result.json content from a ResultGrid."""
    # completed = ended without error (ran to the end or stopped by the scheduler). The trial status,
    # not the last result's "done" flag: a trial that finished just before the driver was killed keeps
    # the last result that reached the experiment state, which may predate its final "done" report.
    completed = sum(t.status == "TERMINATED" for t in grid._experiment_analysis.trials)  # Ray 2.60 ResultGrid
    out: dict[str, Any] = {
        "metric_name": spec.metric, "mode": spec.mode, "family": spec.family, "trials": len(grid),
        "trials_errored": grid.num_errors, "trials_completed": int(completed),
    }
    try:
        best = grid.get_best_result(metric=spec.metric, mode=spec.mode)
    except RuntimeError:  # no trial reported the metric
        best = None
    if best is None or best.metrics is None:
        out["best_metric"] = float("nan")
        return out
    out["best_metric"] = float(best.metrics[spec.metric])
    out["best_trial_iterations"] = int(best.metrics.get("training_iteration", 0))
    out["best_trial_path"] = best.path
    for k in sorted(_tuned(spec)):
        out[f"best_config.{k}"] = best.config[k]
    for k in spec.extra_result_keys:
        out[k] = best.metrics.get(k, float("nan"))
    return out


def _tuned(spec: SweepSpec) -> set[str]:
    """The keys of param_space that are searched (not constants)."""
    return {k for k, v in spec.param_space.items() if not isinstance(v, int | float | str | bool | type(None))}

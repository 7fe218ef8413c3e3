"""A Ray Tune callback that exports every sweep's progress as ``dojo_sweep_*`` metrics.

Tune's own results go to the storage path; this makes a sweep visible in Prometheus and
Grafana (the "Sweeps: GAN and MAML" dashboard). It runs in the Tune driver, which is a
Ray driver, so ``ray.util.metrics`` export through the node's metrics port.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback

from services.common.metrics import MetricSet, define

TRIALS = define("dojo_sweep_trials", "gauge", "Trials of a sweep by status", ("sweep", "family", "status"))
BEST = define("dojo_sweep_best_metric", "gauge", "Best value so far of the metric the sweep optimises",
              ("sweep", "family", "metric"))
TRIAL_METRIC = define("dojo_sweep_trial_metric", "gauge", "Latest value of the sweep's metric reported by a trial",
                      ("sweep", "family", "trial", "metric"))
ITERATIONS = define("dojo_sweep_iterations", "counter", "Training iterations reported by all trials of a sweep",
                    ("sweep", "family"))
ALL = [TRIALS, BEST, TRIAL_METRIC, ITERATIONS]
STATUSES = ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR")


class SweepMetrics(Callback):
    def __init__(self, sweep: str, family: str, metric: str, mode: str):
        self.sweep, self.family, self.metric, self.mode = sweep, family, metric, mode
        self.best: float | None = None
        self._m: MetricSet | None = None

    @property
    def m(self) -> MetricSet:
        if self._m is None:  # created lazily, inside the Ray driver
            self._m = MetricSet(ALL, {"sweep": self.sweep, "family": self.family, "metric": self.metric})
        return self._m

    def _statuses(self, trials: list[Any]) -> None:
        for status in STATUSES:
            self.m.set(TRIALS, sum(t.status == status for t in trials), {"status": status})

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._statuses(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info) -> None:
        self.m.inc(ITERATIONS, 1)
        value = result.get(self.metric)
        if isinstance(value, int | float) and math.isfinite(value):
            self.m.set(TRIAL_METRIC, float(value), {"trial": trial.trial_id})
            better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            if better:
                self.best = float(value)
                self.m.set(BEST, self.best)
        self._statuses(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._statuses(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._statuses(trials)

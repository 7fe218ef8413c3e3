"""The sweep metrics contract (prefix ``dojo_sweep_``), reported by the Tune driver's callback
(``services.sweeps.tune_runner.SweepMetrics``) for every sweep family."""

from services.common.metrics import define

TAGS = ("sweep", "family")

TRIAL_RESULTS = define("dojo_sweep_trial_results", "counter", "Intermediate results reported by sweep trials", TAGS)
TRIALS_FINISHED = define(
    "dojo_sweep_trials_finished", "counter", "Sweep trials that ended (completed, stopped early or failed)",
    TAGS + ("status",),
)
BEST_METRIC = define("dojo_sweep_best_metric", "gauge", "Best value of the optimised metric so far", TAGS)

ALL = [TRIAL_RESULTS, TRIALS_FINISHED, BEST_METRIC]

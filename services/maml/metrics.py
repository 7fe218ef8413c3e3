"""The meta-learning metrics contract (prefix ``dojo_maml_``), reported by the training loop
whenever it runs attached to Ray (inside a Tune trial, or under ``ray job submit``)."""

from services.common.metrics import define

TAGS = ("run", "algo", "task")

META_ITERATIONS = define("dojo_maml_meta_iterations", "counter", "Outer-loop (meta) updates applied", TAGS)
TASKS = define("dojo_maml_tasks", "counter", "Training tasks consumed by the outer loop", TAGS)
TRAIN_LOSS = define(
    "dojo_maml_train_loss", "gauge",
    "Mean loss of the last meta-batch (MAML: query loss after adaptation; Reptile: support loss before)", TAGS,
)
VAL_METRIC = define(
    "dojo_maml_val_metric", "gauge",
    "Meta-validation metric after adaptation (accuracy for few-shot, MSE for sinusoid)", TAGS,
)
ITERATIONS_PER_SECOND = define(
    "dojo_maml_meta_iterations_per_second", "gauge", "Meta-training throughput since the last report", TAGS,
    unit="1/s",
)

ALL = [META_ITERATIONS, TASKS, TRAIN_LOSS, VAL_METRIC, ITERATIONS_PER_SECOND]

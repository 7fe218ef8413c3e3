"""The explain metrics contract (prefix ``dojo_explain_``): reported by the ExplainModel replicas
(explanations, compute latency, model evaluations, batch sizes) and the ingress routes (rejections)."""

from services.common.metrics import define

TAGS = ("model", "method")

EXPLANATIONS = define("dojo_explain_explanations", "counter", "Explanations computed by ExplainModel", TAGS)
LATENCY = define(
    "dojo_explain_latency_ms", "histogram", "Compute time of one explanation batch in ExplainModel", TAGS,
    boundaries=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000), unit="ms",
)
EVALUATIONS = define(
    "dojo_explain_model_evaluations", "counter", "Model evaluations (perturbed inputs) spent on explanations", TAGS
)
BATCH_SIZE = define(
    "dojo_explain_batch_size", "histogram", "Requests per dynamic batch in ExplainModel", TAGS,
    boundaries=(1, 2, 4, 8, 16, 32),
)
REJECTED = define(
    "dojo_explain_rejected", "counter", "Explain requests refused with a 4xx, by reason", ("reason",)
)

ALL = [EXPLANATIONS, LATENCY, EVALUATIONS, BATCH_SIZE, REJECTED]

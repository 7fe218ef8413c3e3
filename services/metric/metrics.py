"""Metrics of metric learning: training progress and the embedding service."""

from __future__ import annotations

from services.common.metrics import MetricSet, define

TAGS = ("loss", "data")
STEPS = define("dojo_metric_train_steps", "counter", "Optimiser steps of metric-learning training", TAGS)
LOSS = define("dojo_metric_train_loss", "gauge", "Latest batch loss of metric-learning training", TAGS)
VAL_RECALL = define("dojo_metric_val_recall_at_1", "gauge", "Validation Recall@1 of metric-learning training", TAGS)
EMBEDDED = define("dojo_embed_images", "counter", "Images embedded by the EmbedModel deployment", ("endpoint",))
ANOMALY = define("dojo_embed_anomaly_score", "histogram",
                 "Anomaly score (distance to the nearest class centroid) of served images", ("endpoint",),
                 boundaries=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0))


def train_metrics(loss: str, data: str) -> MetricSet | None:
    """Live training metrics when running inside Ray (a job's driver); None otherwise."""
    try:
        import ray

        if not ray.is_initialized():
            return None
    except ImportError:
        return None
    return MetricSet([STEPS, LOSS, VAL_RECALL], {"loss": loss, "data": data})

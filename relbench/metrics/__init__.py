"""Streaming, shard-safe uncertainty metrics."""

from relbench.metrics.classification import (
    EXPECTED_CALIBRATION_ERROR,
    IN_DISTRIBUTION,
    OUT_OF_DISTRIBUTION,
    PROPER_SCORES,
    eval_suite,
)
from relbench.metrics.predictive import predictive_log_probs, predictive_probs
from relbench.metrics.streaming import (
    Predictions,
    StreamingMetric,
    add_statistics,
    batch_statistics,
    results,
)

__all__ = [
    "EXPECTED_CALIBRATION_ERROR",
    "IN_DISTRIBUTION",
    "OUT_OF_DISTRIBUTION",
    "PROPER_SCORES",
    "Predictions",
    "StreamingMetric",
    "add_statistics",
    "batch_statistics",
    "eval_suite",
    "predictive_log_probs",
    "predictive_probs",
    "results",
]

"""Streaming, shard-safe uncertainty metrics.

Modules: ``predictive`` (logits -> predictive distribution), ``streaming`` (the
statistics/result design), ``classification`` (proper scores, suites), ``calibration``,
``selective``, ``ranking``, ``ood``, ``diversity``, ``scores``, and the suites of the other
tasks: ``multilabel`` and ``regression``.
"""

from relbench.metrics.calibration import (
    CLASSWISE_CALIBRATION,
    EQUAL_WIDTH_CALIBRATION,
    adaptive_ece,
    calibration_auc,
    classwise_ece,
    expected_calibration_error,
)
from relbench.metrics.classification import (
    BRIER_DECOMPOSITION,
    EXPECTED_CALIBRATION_ERROR,
    IN_DISTRIBUTION,
    OUT_OF_DISTRIBUTION,
    PROPER_SCORES,
    SCORE_METRICS,
    brier_decomposition,
    eval_suite,
    negative_log_likelihood,
    proper_scores,
)
from relbench.metrics.diversity import ENSEMBLE_DIVERSITY, ensemble_diversity
from relbench.metrics.multilabel import multilabel_metrics
from relbench.metrics.ood import detection_metrics, detection_results
from relbench.metrics.predictive import (
    multilabel_log_probs,
    multilabel_probs,
    predictive_log_probs,
    predictive_probs,
    task_log_probs,
)
from relbench.metrics.ranking import auroc, average_precision, fpr_at_tpr
from relbench.metrics.scores import UNCERTAINTY_SCORES, uncertainty_scores
from relbench.metrics.selective import (
    SELECTIVE_PREDICTION,
    accuracy_at_coverage,
    aurc,
    oracle_collaborative_accuracy,
    risk_coverage_curve,
)
from relbench.metrics.streaming import (
    Predictions,
    StreamingMetric,
    add_statistics,
    batch_statistics,
    curves,
    evaluate_arrays,
    results,
)

__all__ = [
    "BRIER_DECOMPOSITION",
    "CLASSWISE_CALIBRATION",
    "ENSEMBLE_DIVERSITY",
    "EQUAL_WIDTH_CALIBRATION",
    "EXPECTED_CALIBRATION_ERROR",
    "IN_DISTRIBUTION",
    "OUT_OF_DISTRIBUTION",
    "PROPER_SCORES",
    "Predictions",
    "SCORE_METRICS",
    "SELECTIVE_PREDICTION",
    "StreamingMetric",
    "UNCERTAINTY_SCORES",
    "accuracy_at_coverage",
    "adaptive_ece",
    "add_statistics",
    "aurc",
    "auroc",
    "average_precision",
    "batch_statistics",
    "brier_decomposition",
    "calibration_auc",
    "classwise_ece",
    "curves",
    "detection_metrics",
    "detection_results",
    "ensemble_diversity",
    "eval_suite",
    "evaluate_arrays",
    "expected_calibration_error",
    "fpr_at_tpr",
    "multilabel_log_probs",
    "multilabel_metrics",
    "multilabel_probs",
    "negative_log_likelihood",
    "oracle_collaborative_accuracy",
    "predictive_log_probs",
    "predictive_probs",
    "proper_scores",
    "results",
    "risk_coverage_curve",
    "task_log_probs",
    "uncertainty_scores",
]

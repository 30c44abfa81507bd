"""Proper scoring rules and the metric suites of classification evaluation sets.

With ``p`` the predictive distribution, ``y`` the label, ``e_y`` its one-hot vector
and ``N`` the number of (unmasked) examples:

* accuracy = 1/N * sum 1[argmax p = y]
* NLL = -1/N * sum log p_y  (natural log) [1]
* Brier = 1/N * sum_i ||p_i - e_{y_i}||^2  (the multi-class form, in [0, 2]) [2]
* Brier decomposition [3, 4], grouping examples by their predicted class ``j`` (weight
  ``w_j``, label frequencies ``q_j = P(y | argmax p = j)``, base rate ``ybar``):
  uncertainty = sum_k ybar_k (1 - ybar_k), resolution = sum_j w_j ||q_j - ybar||^2,
  reliability = 1/N sum_i ||p_i - q_{j(i)}||^2. Then Brier = reliability - resolution
  + uncertainty + 2/N sum_i <p_i - q_{j(i)}, q_{j(i)} - e_{y_i}>, and the last term is 0
  when ``p`` is constant within each group (exact there, approximate otherwise).

OOD sets have no labels; for them we report the mean confidence and the mean
predictive entropy (and, pooled with the test set, the detection metrics of ``ood``).

``eval_suite(task, is_ood)`` is the one place that decides which metrics an
evaluation set gets; see each module for the other formulas.

References:
  [1] Gneiting, Raftery. Strictly Proper Scoring Rules, Prediction, and Estimation.
      JASA 2007. https://doi.org/10.1198/016214506000001437
  [2] Brier. Verification of Forecasts Expressed in Terms of Probability. Monthly
      Weather Review 1950. https://doi.org/10.1175/1520-0493(1950)078<0001:VOFEIT>2.0.CO;2
  [3] Murphy. A New Vector Partition of the Probability Score. Journal of Applied
      Meteorology 1973. https://doi.org/10.1175/1520-0450(1973)012<0595:ANVPOT>2.0.CO;2
  [4] Nowozin et al. uncertainty_metrics: brier_decomposition (the per-example
      reliability used here). https://github.com/google/uncertainty-metrics
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from relbench.metrics.calibration import (
    CLASSWISE_CALIBRATION,
    EQUAL_WIDTH_CALIBRATION,
    calibration_bins,
)
from relbench.metrics.conformal import PREDICTION_INTERVALS, PREDICTION_SETS
from relbench.metrics.diversity import ENSEMBLE_DIVERSITY
from relbench.metrics.groups import GROUP_METRICS
from relbench.metrics.multilabel import (
    MULTILABEL_IN_DISTRIBUTION,
    MULTILABEL_OUT_OF_DISTRIBUTION,
    MULTILABEL_UNCERTAINTY_SCORES,
)
from relbench.metrics.regression import REGRESSION_IN_DISTRIBUTION, REGRESSION_OUT_OF_DISTRIBUTION
from relbench.metrics.scores import UNCERTAINTY_SCORES, entropy
from relbench.metrics.selective import SELECTIVE_PREDICTION
from relbench.metrics.soft_labels import SOFT_LABEL_SCORES
from relbench.metrics.streaming import Predictions, StreamingMetric, evaluate_arrays


def _label_terms(p: Predictions):
    probs = jnp.exp(p.log_probs)
    labels = jnp.maximum(p.labels, 0)  # OOD labels (-1) are masked out by the callers.
    correct = (jnp.argmax(p.log_probs, axis=-1) == labels).astype(jnp.float32)
    one_hot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
    return probs, labels, correct, one_hot


def _proper_scores_statistics(p: Predictions):
    probs, labels, correct, one_hot = _label_terms(p)
    log_p_label = jnp.take_along_axis(p.log_probs, labels[:, None], axis=-1)[:, 0]
    brier = jnp.sum((probs - one_hot) ** 2, axis=-1)
    return {
        "count": jnp.sum(p.mask),
        "correct": jnp.sum(p.mask * correct),
        "nll": -jnp.sum(p.mask * log_p_label),
        "brier": jnp.sum(p.mask * brier),
    }


def _proper_scores_result(s):
    n = s["count"]
    return {"accuracy": s["correct"] / n, "nll": s["nll"] / n, "brier": s["brier"] / n}


def _brier_decomposition_statistics(p: Predictions):
    probs, _, _, one_hot = _label_terms(p)
    num_classes = probs.shape[-1]
    group = jax.nn.one_hot(jnp.argmax(probs, -1), num_classes) * p.mask[:, None]  # [B, K]
    return {
        "group_count": jnp.sum(group, axis=0),  # [K]
        "group_probs": group.T @ probs,  # [K (predicted), K]
        "group_labels": group.T @ one_hot,  # [K (predicted), K (label)]
        "group_sq_norm": group.T @ jnp.sum(probs**2, axis=-1),  # [K]
    }


def _brier_decomposition_result(s):
    count = s["group_count"]
    n = np.sum(count)
    safe = np.maximum(count, 1.0)[:, None]
    label_freq = s["group_labels"] / safe  # q_j, zero rows for empty groups
    base_rate = np.sum(s["group_labels"], axis=0) / n
    resolution = np.sum(count[:, None] * (label_freq - base_rate) ** 2) / n
    # sum_{i in j} ||p_i - q_j||^2 = sum ||p_i||^2 - 2 <S_j, q_j> + n_j ||q_j||^2: a sum
    # of squares, whose expanded form can round below 0 for a perfect model (-6.6e-9 seen)
    reliability = max(
        (
            np.sum(s["group_sq_norm"])
            - 2 * np.sum(s["group_probs"] * label_freq)
            + np.sum(count * np.sum(label_freq**2, axis=-1))
        )
        / n,
        0.0,
    )
    return {
        "brier_reliability": reliability,
        "brier_resolution": resolution,
        "brier_uncertainty": np.sum(base_rate * (1 - base_rate)),
    }


def _ood_statistics(p: Predictions):
    probs = jnp.exp(p.log_probs)
    return {
        "count": jnp.sum(p.mask),
        "confidence": jnp.sum(p.mask * jnp.max(probs, axis=-1)),
        "entropy": jnp.sum(p.mask * entropy(p.log_probs)),
    }


def _ood_result(s):
    return {
        "mean_confidence": s["confidence"] / s["count"],
        "mean_entropy": s["entropy"] / s["count"],
    }


PROPER_SCORES = StreamingMetric(_proper_scores_statistics, _proper_scores_result)
BRIER_DECOMPOSITION = StreamingMetric(_brier_decomposition_statistics, _brier_decomposition_result)
EXPECTED_CALIBRATION_ERROR = EQUAL_WIDTH_CALIBRATION  # ECE, RMS-CE, MCE, reliability
OOD_CONFIDENCE = StreamingMetric(_ood_statistics, _ood_result)

IN_DISTRIBUTION = (
    PROPER_SCORES,
    BRIER_DECOMPOSITION,
    EXPECTED_CALIBRATION_ERROR,
    CLASSWISE_CALIBRATION,
    SELECTIVE_PREDICTION,
    ENSEMBLE_DIVERSITY,
    UNCERTAINTY_SCORES,
)
OUT_OF_DISTRIBUTION = (OOD_CONFIDENCE, ENSEMBLE_DIVERSITY, UNCERTAINTY_SCORES)

#: The per-example uncertainty scores of each suite: OOD detection pools a set's with
#: the reference set's (``train.evaluation``).
SCORE_METRICS = (UNCERTAINTY_SCORES, MULTILABEL_UNCERTAINTY_SCORES)


def eval_suite(task: str, is_ood: bool) -> tuple[StreamingMetric, ...]:
    """The metrics reported for an evaluation set: the one place this is decided.

    Classification sets also get the soft-label scores and the per-group metrics, which
    report only for sets whose batches carry soft labels (``"soft_label"``) or group
    memberships (``"group"``), and every set the conformal metrics (``conformal.py``),
    which report only after a conformal post-hoc step; multi-label sets get
    ``multilabel.py``'s suite.
    """
    if task == "regression":
        if is_ood:
            return REGRESSION_OUT_OF_DISTRIBUTION
        return (*REGRESSION_IN_DISTRIBUTION, PREDICTION_INTERVALS)
    if task == "multilabel":
        return MULTILABEL_OUT_OF_DISTRIBUTION if is_ood else MULTILABEL_IN_DISTRIBUTION
    if task != "classification":
        raise ValueError(
            f"no metric suite for task '{task}'; use classification, multilabel or regression"
        )
    if is_ood:
        return (*OUT_OF_DISTRIBUTION, PREDICTION_SETS)
    return (*IN_DISTRIBUTION, SOFT_LABEL_SCORES, GROUP_METRICS, PREDICTION_SETS)


def _predictions(log_probs, labels, mask) -> Predictions:
    log_probs = jnp.asarray(log_probs, jnp.float32)
    n = log_probs.shape[0]
    return Predictions(
        logits=log_probs[None],  # [N, K] -> [1, N, K]: log p is a valid member logit
        log_probs=log_probs,
        labels=jnp.asarray(labels, jnp.int32),
        mask=jnp.ones(n) if mask is None else jnp.asarray(np.asarray(mask), jnp.float32),
    )


def proper_scores(log_probs, labels, mask=None) -> dict[str, float]:
    """Accuracy, NLL and Brier of ``[N, K]`` log probabilities (whole arrays)."""
    return evaluate_arrays((PROPER_SCORES,), _predictions(log_probs, labels, mask))


def negative_log_likelihood(log_probs, labels, mask=None) -> float:
    """Mean ``-log p_y`` of ``[N, K]`` log probabilities and ``[N]`` labels."""
    return proper_scores(log_probs, labels, mask)["nll"]


def brier_decomposition(probs, labels, mask=None) -> dict[str, float]:
    """Reliability, resolution and uncertainty of ``[N, K]`` probabilities."""
    log_probs = jnp.log(jnp.asarray(probs, jnp.float32))
    return evaluate_arrays((BRIER_DECOMPOSITION,), _predictions(log_probs, labels, mask))


__all__ = [
    "BRIER_DECOMPOSITION",
    "EXPECTED_CALIBRATION_ERROR",
    "IN_DISTRIBUTION",
    "OOD_CONFIDENCE",
    "OUT_OF_DISTRIBUTION",
    "PROPER_SCORES",
    "SCORE_METRICS",
    "brier_decomposition",
    "calibration_bins",
    "eval_suite",
    "negative_log_likelihood",
    "proper_scores",
]

"""Selective prediction: answer the confident examples, abstain on (or defer) the rest.

Examples are ranked by confidence ``c_i = max_k p_ik`` (most confident first); ``a_i``
is the correctness, ``N`` the number of examples. Accepting every example with
``c_i >= t`` gives a coverage (the fraction accepted) and a risk (the error rate among
the accepted) [1]. Tied confidences are accepted or rejected together, and a metric
asked for a coverage that splits a tie group counts that group at its mean accuracy
(the expected value under random tie-breaking); let ``C(k)`` be the expected number of
correct examples among the ``k`` most confident.

* risk-coverage curve: ``(k / N, 1 - C(k) / k)`` for ``k`` at the end of each tie group
  (a curve, for plots, resampled on a coverage grid);
* AURC = 1/N sum_i risk(c_i), the risk at the threshold of each example — the area under
  the risk-coverage curve, tie-invariant [2];
* accuracy at coverage ``q`` = C(k) / k with ``k = max(1, round(q N))``;
* oracle-collaborative accuracy at deferral fraction ``f``: the ``d = round(f N)`` least
  confident examples go to an oracle that is always right,
  ``(d + C(N - d)) / N`` [3].

The per-example confidence and correctness collected here (``kind="concat"``) also feed
the equal-mass ECE and the calibration AUC (``calibration.py``).

References:
  [1] El-Yaniv, Wiener. On the Foundations of Noise-free Selective Classification. JMLR
      2010. https://jmlr.org/papers/v11/el-yaniv10a.html
  [2] Geifman, Uziel, El-Yaniv. Bias-Reduced Uncertainty Estimation for Deep Neural
      Classifiers. ICLR 2019. https://arxiv.org/abs/1805.08206
  [3] Kivlichan, Lin, Liu, Vasserman. Measuring and Improving Model-Moderator
      Collaboration using Uncertainty Estimation. WOAH 2021. https://arxiv.org/abs/2107.04212
"""

from __future__ import annotations

import numpy as np

from relbench.metrics import calibration
from relbench.metrics.streaming import Predictions, StreamingMetric

COVERAGES = (0.5, 0.8, 0.9, 0.95, 0.99)
DEFERRAL_FRACTIONS = (0.01, 0.05, 0.1)
CURVE_POINTS = 100


def _cumulative_correct(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """Accepted counts and correct counts at the end of each tie group (most confident
    first), both starting with a leading 0."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    order = np.argsort(-confidence, kind="stable")
    sorted_confidence = confidence[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_confidence)), len(confidence) - 1]
    return np.r_[0.0, ends + 1.0], np.r_[0.0, np.cumsum(correct[order])[ends]]


def expected_correct(confidence, correct, k) -> np.ndarray:
    """``C(k)``: expected correct among the ``k`` most confident (random tie-breaking)."""
    accepted, num_correct = _cumulative_correct(confidence, correct)
    return np.interp(k, accepted, num_correct)


def risk_coverage_curve(confidence, correct, num_points: int = CURVE_POINTS):
    """``(coverage, risk)`` on ``num_points`` coverages evenly spaced in ``(0, 1]``."""
    n = len(confidence)
    coverage = np.arange(1, num_points + 1) / num_points
    k = np.maximum(coverage * n, 1.0)
    return coverage, 1.0 - expected_correct(confidence, correct, k) / k


def aurc(confidence, correct) -> float:
    """Area under the risk-coverage curve (tie-invariant; lower is better)."""
    n = len(confidence)
    if n == 0:
        return float("nan")
    accepted, num_correct = _cumulative_correct(confidence, correct)
    group_size = np.diff(accepted)
    risk = 1.0 - num_correct[1:] / accepted[1:]
    return float(group_size @ risk / n)


def accuracy_at_coverage(confidence, correct, coverage: float) -> float:
    """Accuracy on the ``round(coverage * N)`` most confident examples (at least one)."""
    k = max(1, round(coverage * len(confidence)))
    return float(expected_correct(confidence, correct, k) / k)


def oracle_collaborative_accuracy(confidence, correct, fraction: float) -> float:
    """Accuracy when the ``round(fraction * N)`` least confident go to a perfect oracle."""
    n = len(confidence)
    deferred = round(fraction * n)
    return float((deferred + expected_correct(confidence, correct, n - deferred)) / n)


def _statistics(p: Predictions):
    confidence, correct = calibration.confidence_and_correct(p.log_probs, p.labels)
    return {"confidence": confidence, "correct": correct}


def _result(s) -> dict[str, float]:
    confidence, correct = s["confidence"], s["correct"]
    if len(confidence) == 0:
        return {}
    out = {
        "aurc": aurc(confidence, correct),
        "adaptive_ece": calibration.adaptive_ece(confidence, correct),
        "calibration_auc": calibration.calibration_auc(confidence, correct),
    }
    for q in COVERAGES:
        out[f"accuracy@coverage={q:g}"] = accuracy_at_coverage(confidence, correct, q)
    for f in DEFERRAL_FRACTIONS:
        out[f"oracle_accuracy@deferral={f:g}"] = oracle_collaborative_accuracy(
            confidence, correct, f
        )
    return out


def _curves(s) -> dict:
    if len(s["confidence"]) == 0:
        return {}
    coverage, risk = risk_coverage_curve(s["confidence"], s["correct"])
    return {"risk_coverage": {"coverage": coverage.tolist(), "risk": risk.tolist()}}


SELECTIVE_PREDICTION = StreamingMetric(_statistics, _result, kind="concat", curves=_curves)

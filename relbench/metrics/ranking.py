"""Binary ranking metrics of a score against positive/negative labels (host numpy).

Every function takes ``scores [N]`` (larger = more positive) and ``positives [N]``
(bool). They work on whole arrays because rankings are not sums; streaming metrics feed
them concatenated per-example arrays (``kind="concat"``, see ``streaming``). Ties are
handled as scikit-learn does: tied scores form one threshold.

With ``P`` positives, ``Q`` negatives and, at threshold ``t`` (predict positive when
``s >= t``), ``TP(t)``, ``FP(t)``:

* AUROC = P(s+ > s-) + 1/2 P(s+ = s-) = (R+ - P(P+1)/2) / (P Q), where ``R+`` is the sum
  of the positives' mid-ranks (Mann-Whitney U) [1];
* average precision AP = sum_t (TP(t) - TP(t_prev)) / P * TP(t) / (TP(t) + FP(t)) over
  the distinct scores in decreasing order: the step-wise area under the
  precision-recall curve, without interpolation [2];
* FPR at TPR ``q`` = FP(t*) / Q at the largest threshold ``t*`` with TP(t*) / P >= q [3].

AUROC and FPR are NaN when a class is absent (they are undefined); AP is NaN when
there is no positive.

References:
  [1] Hanley, McNeil. The meaning and use of the area under a receiver operating
      characteristic (ROC) curve. Radiology 1982. https://doi.org/10.1148/radiology.143.1.7063747
  [2] Davis, Goadrich. The Relationship Between Precision-Recall and ROC Curves. ICML
      2006. https://doi.org/10.1145/1143844.1143874
  [3] Hendrycks, Gimpel. A Baseline for Detecting Misclassified and Out-of-Distribution
      Examples in Neural Networks. ICLR 2017. https://arxiv.org/abs/1610.02136
"""

from __future__ import annotations

import math

import numpy as np


def _as_binary(scores, positives) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64).reshape(-1)
    positives = np.asarray(positives).reshape(-1).astype(bool)
    if scores.shape != positives.shape:
        raise ValueError(f"scores {scores.shape} and positives {positives.shape} differ")
    return scores, positives


def threshold_counts(scores, positives) -> tuple[np.ndarray, np.ndarray]:
    """``(TP, FP)`` at every distinct score, thresholds in decreasing order."""
    scores, positives = _as_binary(scores, positives)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    # Indices of the last example of each tie group (in decreasing order of score).
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    tp = np.cumsum(positives[order])[ends].astype(np.float64)
    fp = ends + 1 - tp
    return tp, fp


def auroc(scores, positives) -> float:
    """Area under the ROC curve, ties counted one half (the Mann-Whitney statistic)."""
    scores, positives = _as_binary(scores, positives)
    num_pos = float(np.sum(positives))
    num_neg = len(scores) - num_pos
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    order = np.argsort(scores)
    sorted_scores = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    mid_rank = (starts + ends + 1) / 2.0  # the mean 1-based rank of each tie group
    pos_per_group = np.add.reduceat(positives[order].astype(np.float64), starts)
    rank_sum = float(pos_per_group @ mid_rank)
    return (rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg)


def average_precision(scores, positives) -> float:
    """Step-wise area under the precision-recall curve (scikit-learn's convention)."""
    tp, fp = threshold_counts(scores, positives)
    num_pos = tp[-1] if len(tp) else 0.0
    if num_pos == 0:
        return float("nan")
    # Each term is at most its TP step and fsum rounds the sum once, so AP <= 1 exactly
    # (a dot product of recall steps and precisions reached 1.0000000000000004).
    terms = np.diff(np.r_[0.0, tp]) * (tp / (tp + fp))
    return math.fsum(terms.tolist()) / num_pos


def fpr_at_tpr(scores, positives, tpr: float = 0.95) -> float:
    """False-positive rate at the largest threshold whose true-positive rate >= ``tpr``."""
    tp, fp = threshold_counts(scores, positives)
    num_pos, num_neg = (tp[-1], fp[-1]) if len(tp) else (0.0, 0.0)
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    first = int(np.argmax(tp / num_pos >= tpr))
    return float(fp[first] / num_neg)

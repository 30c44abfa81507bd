"""Out-of-distribution detection: an OOD set mixed with the in-distribution test set.

An OOD set is never evaluated alone. Its per-example uncertainty scores (``scores.py``,
larger = more uncertain) are pooled with those of the in-distribution reference set
(``config.evaluation.ood_reference``, the test set by default), and **OOD is the
positive class**. For each score ``s``:

* ``auroc/s``: AUROC of ``s`` separating OOD (positive) from ID;
* ``aupr_out/s``: average precision with OOD positive, ranked by ``s``;
* ``aupr_in/s``: average precision with ID positive, ranked by ``-s``;
* ``fpr95/s``: the fraction of ID examples flagged as OOD at the largest threshold that
  flags at least 95% of the OOD examples (FPR at 95% TPR, OOD positive).

The formulas and tie conventions are those of ``ranking.py``.

References:
  [1] Hendrycks, Gimpel. A Baseline for Detecting Misclassified and Out-of-Distribution
      Examples in Neural Networks. ICLR 2017. https://arxiv.org/abs/1610.02136
  [2] Liang, Li, Srikant. Enhancing The Reliability of Out-of-distribution Image
      Detection in Neural Networks (ODIN). ICLR 2018. https://arxiv.org/abs/1706.02690
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from relbench.metrics import ranking

HISTOGRAM_BINS = 30


def detection_metrics(in_scores, out_scores) -> dict[str, float]:
    """``auroc``, ``aupr_in``, ``aupr_out``, ``fpr95`` of one score, OOD positive."""
    scores = np.concatenate([np.asarray(in_scores), np.asarray(out_scores)])
    is_ood = np.r_[np.zeros(len(in_scores), bool), np.ones(len(out_scores), bool)]
    return {
        "auroc": ranking.auroc(scores, is_ood),
        "aupr_in": ranking.average_precision(-scores, ~is_ood),
        "aupr_out": ranking.average_precision(scores, is_ood),
        "fpr95": ranking.fpr_at_tpr(scores, is_ood, 0.95),
    }


def detection_results(
    in_scores: Mapping[str, np.ndarray], out_scores: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Every detection metric for every score both sets have: ``{"auroc/entropy": ..}``."""
    out = {}
    for name in sorted(set(in_scores) & set(out_scores)):
        for metric, value in detection_metrics(in_scores[name], out_scores[name]).items():
            out[f"{metric}/{name}"] = value
    return out


def score_histograms(
    in_scores: Mapping[str, np.ndarray], out_scores: Mapping[str, np.ndarray]
) -> dict[str, dict[str, list[float]]]:
    """Histograms of each score on shared bin edges, ID vs OOD (for plots)."""
    out = {}
    for name in sorted(set(in_scores) & set(out_scores)):
        both = np.concatenate([in_scores[name], out_scores[name]])
        low, high = (float(np.min(both)), float(np.max(both))) if len(both) else (0.0, 1.0)
        edges = np.linspace(low, high if high > low else low + 1.0, HISTOGRAM_BINS + 1)
        out[f"histogram/{name}"] = {
            "edges": edges.tolist(),
            "in": np.histogram(in_scores[name], edges)[0].tolist(),
            "out": np.histogram(out_scores[name], edges)[0].tolist(),
        }
    return out

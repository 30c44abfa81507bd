"""Open-set recognition: classify the known classes, reject the unknown ones.

A classifier trained on the known classes meets, at test time, the known test set
(``N_k`` examples, labels ``y_i``) and examples of classes it never saw (``N_u``
unknowns, e.g. digits' ``held_out_classes``: ``ood_heldout``). It accepts an example
when its confidence ``c = -s`` (``s`` an uncertainty score of ``scores.py``, larger =
more uncertain; ``c`` = the maximum softmax probability for ``max_prob``) reaches a
threshold ``t``. Dhamija et al. [1] plot, over every threshold,

* the correct classification rate CCR(t) = |{i known: argmax p_i = y_i, c_i >= t}| / N_k,
* against the false positive rate FPR(t) = |{j unknown: c_j >= t}| / N_u,

the open-set classification rate (OSCR) curve. It rises from (0, 0) (reject everything)
to (1, closed-set accuracy) (accept everything). Its area, ``oscr``, is in
``[0, closed-set accuracy]``: 1 for a perfect classifier whose every unknown is less
confident than every known example, and the closed-set accuracy x 1/2 for a confidence
that does not separate them at all. Distinct thresholds are taken in decreasing order;
tied confidences are accepted together and the curve joins the points with straight
lines (the trapezoidal area, the tie convention of ``ranking.auroc``).

The evaluation protocol (``train.evaluation``) reports, for every OOD set pooled with
the in-distribution reference set: ``closed_set_accuracy`` (the reference set's
accuracy), ``auroc/<score>`` of known vs unknown (``ood.py``), and ``oscr/<score>``
with ``oscr`` = ``oscr/max_prob``, the curve of [1]; ``curves.json`` holds the curve.

References:
  [1] Dhamija, Günther, Boult. Reducing Network Agnostophobia. NeurIPS 2018.
      https://arxiv.org/abs/1811.04110
  [2] Vaze, Han, Vedaldi, Zisserman. Open-Set Recognition: a Good Closed-Set Classifier
      is All You Need? ICLR 2022. https://arxiv.org/abs/2110.06207
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

HEADLINE_SCORE = "max_prob"
CURVE_POINTS = 101


def oscr_curve(known_confidence, known_correct, unknown_confidence):
    """``(fpr, ccr)`` at every distinct threshold, from (0, 0) to (1, accuracy)."""
    known_confidence = np.asarray(known_confidence, np.float64)
    unknown_confidence = np.asarray(unknown_confidence, np.float64)
    correct = np.asarray(known_correct, np.float64)
    confidence = np.concatenate([known_confidence, unknown_confidence])
    is_correct_known = np.concatenate([correct, np.zeros(len(unknown_confidence))])
    is_unknown = np.r_[np.zeros(len(known_confidence)), np.ones(len(unknown_confidence))]
    order = np.argsort(-confidence, kind="stable")
    ends = np.r_[np.flatnonzero(np.diff(confidence[order])), len(confidence) - 1]
    ccr = np.r_[0.0, np.cumsum(is_correct_known[order])[ends]] / max(len(known_confidence), 1)
    fpr = np.r_[0.0, np.cumsum(is_unknown[order])[ends]] / max(len(unknown_confidence), 1)
    return fpr, ccr


def oscr(known_confidence, known_correct, unknown_confidence) -> float:
    """The area under the OSCR curve; NaN without known or without unknown examples."""
    if len(known_confidence) == 0 or len(unknown_confidence) == 0:
        return float("nan")
    fpr, ccr = oscr_curve(known_confidence, known_correct, unknown_confidence)
    return float(np.sum(np.diff(fpr) * (ccr[1:] + ccr[:-1]) / 2))


def open_set_results(
    known_scores: Mapping[str, np.ndarray],
    known_correct: np.ndarray,
    unknown_scores: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """``closed_set_accuracy``, ``oscr`` and ``oscr/<score>`` for every shared score."""
    out = {"closed_set_accuracy": float(np.mean(known_correct)) if len(known_correct) else np.nan}
    for name in sorted(set(known_scores) & set(unknown_scores)):
        out[f"oscr/{name}"] = oscr(-known_scores[name], known_correct, -unknown_scores[name])
    if f"oscr/{HEADLINE_SCORE}" in out:
        out["oscr"] = out[f"oscr/{HEADLINE_SCORE}"]
    return out


def open_set_curves(known_scores, known_correct, unknown_scores) -> dict:
    """The OSCR curve of the headline score, on ``CURVE_POINTS`` evenly spaced FPRs."""
    if HEADLINE_SCORE not in known_scores or HEADLINE_SCORE not in unknown_scores:
        return {}
    fpr, ccr = oscr_curve(
        -known_scores[HEADLINE_SCORE], known_correct, -unknown_scores[HEADLINE_SCORE]
    )
    grid = np.linspace(0.0, 1.0, CURVE_POINTS)
    return {"oscr": {"fpr": grid.tolist(), "ccr": np.interp(grid, fpr, ccr).tolist()}}

"""Metrics of conformal predictions: prediction sets (classification) and prediction
intervals (regression).

A conformal post-hoc step (``relbench.posthoc.conformal_classification``,
``...conformal_regression``) adds its predictions to the extras; these metrics read
them, and contribute nothing to a run without such a step (or to its ``raw/`` view).

**Sets** (``extras["prediction_set"]``, ``[1, B, K]`` 0/1), with ``C_i`` the set of
example ``i`` and ``y_i`` its label, over the labelled examples:

* ``coverage``: ``1/N sum_i 1[y_i in C_i]``;
* ``mean_set_size``: ``1/N sum_i |C_i|`` (over every example, so OOD sets report it too:
  larger sets there mean the sets notice the shift);
* ``coverage@size=S``: the coverage of the examples whose set size falls in the bin
  ``S`` (``0``, ``1``, ``2-3``, ``4-10``, ``11-100``, ``101+``; non-empty bins only),
  the size-stratified coverage of [1]; ``worst_size_coverage`` the least of them;
* ``worst_class_coverage``: ``min_k`` of the coverage among the examples of class ``k``
  (the classes present), the class-conditional coverage a Mondrian step guarantees.

**Intervals** (``extras["interval_lower"]``, ``["interval_upper"]``, ``[1, B, O]``, and
``extras["interval_alpha"]``, ``[1, B]``, the miscoverage ``alpha`` they were built for):

* ``interval_coverage``: the fraction of targets inside ``[l, u]``;
* ``interval_width``: the mean ``u - l``;
* ``winkler_score``: the mean interval score [2]
  ``(u - l) + 2/alpha (l - y) 1[y < l] + 2/alpha (y - u) 1[y > u]``.

All statistics are sums over examples (counts per size bin and per class), so they
stream and shard like every other ``sum`` metric.

References:
  [1] Angelopoulos, Bates, Malik, Jordan. Uncertainty Sets for Image Classifiers using
      Conformal Prediction. ICLR 2021. https://arxiv.org/abs/2009.14193
  [2] Gneiting, Raftery. Strictly Proper Scoring Rules, Prediction, and Estimation.
      JASA 2007 (section 6.2). https://doi.org/10.1198/016214506000001437
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from relbench.metrics.streaming import Predictions, StreamingMetric

PREDICTION_SET = "prediction_set"
INTERVAL_LOWER, INTERVAL_UPPER, INTERVAL_ALPHA = (
    "interval_lower",
    "interval_upper",
    "interval_alpha",
)

# Set-size bins of the size-stratified coverage: [low, high] inclusive.
SIZE_BINS = ((0, 0), (1, 1), (2, 3), (4, 10), (11, 100), (101, None))


def size_bin_name(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def _set_statistics(p: Predictions):
    if PREDICTION_SET not in p.extras:
        return {}
    sets = p.extras[PREDICTION_SET][0] > 0.5  # [1, B, K] -> [B, K]
    k = sets.shape[-1]
    labelled = p.mask * (p.labels >= 0)
    label = jnp.clip(p.labels, 0, k - 1)
    covered = labelled * jnp.take_along_axis(sets, label[:, None], axis=-1)[:, 0]
    size = jnp.sum(sets, axis=-1)
    in_bin = jnp.stack(
        [(size >= lo) & (size <= (k if hi is None else hi)) for lo, hi in SIZE_BINS], axis=-1
    )  # [B, bins]
    one_hot = (label[:, None] == jnp.arange(k)) * labelled[:, None]  # [B, K]
    return {
        "count": jnp.sum(p.mask),
        "size": jnp.sum(p.mask * size),
        "labelled": jnp.sum(labelled),
        "covered": jnp.sum(covered),
        "bin_count": jnp.sum(labelled[:, None] * in_bin, axis=0),
        "bin_covered": jnp.sum(covered[:, None] * in_bin, axis=0),
        "class_count": jnp.sum(one_hot, axis=0),
        "class_covered": jnp.sum(covered[:, None] * one_hot, axis=0),
    }


def _set_result(s) -> dict[str, float]:
    if not s:
        return {}
    out = {"mean_set_size": s["size"] / max(s["count"], 1.0)}
    if s["labelled"] == 0:
        return out
    out["coverage"] = s["covered"] / s["labelled"]
    bins = s["bin_count"] > 0
    for (low, high), count, covered in zip(
        SIZE_BINS, s["bin_count"], s["bin_covered"], strict=True
    ):
        if count > 0:
            out[f"coverage@size={size_bin_name(low, high)}"] = covered / count
    out["worst_size_coverage"] = float(np.min(s["bin_covered"][bins] / s["bin_count"][bins]))
    present = s["class_count"] > 0
    out["worst_class_coverage"] = float(
        np.min(s["class_covered"][present] / s["class_count"][present])
    )
    return out


def _interval_statistics(p: Predictions):
    if INTERVAL_LOWER not in p.extras:
        return {}
    lower, upper = p.extras[INTERVAL_LOWER][0], p.extras[INTERVAL_UPPER][0]  # [B, O]
    alpha = p.extras[INTERVAL_ALPHA][0][:, None]  # [1, B] -> [B, 1]
    y = p.labels.reshape(lower.shape).astype(lower.dtype)
    mask = p.mask[:, None]
    width = upper - lower
    winkler = width + 2 / alpha * (jnp.maximum(lower - y, 0) + jnp.maximum(y - upper, 0))
    return {
        "count": jnp.sum(mask * jnp.ones_like(y)),
        "covered": jnp.sum(mask * ((y >= lower) & (y <= upper))),
        "width": jnp.sum(mask * width),
        "winkler": jnp.sum(mask * winkler),
    }


def _interval_result(s) -> dict[str, float]:
    if not s:
        return {}
    n = max(s["count"], 1.0)
    return {
        "interval_coverage": s["covered"] / n,
        "interval_width": s["width"] / n,
        "winkler_score": s["winkler"] / n,
    }


PREDICTION_SETS = StreamingMetric(_set_statistics, _set_result)
PREDICTION_INTERVALS = StreamingMetric(_interval_statistics, _interval_result)

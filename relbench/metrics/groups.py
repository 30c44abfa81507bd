"""Subpopulation metrics: accuracy and calibration per group, and the worst group's.

A dataset with subpopulations (e.g. class x spurious attribute, as Waterbirds and
Colored MNIST define them [1]; ``relbench.data.groups``) gives each example a ``[G]``
0/1 membership row ``g_i`` (``"group"`` in its batches; an example may belong to
several groups). With
``a_i`` the correctness and ``c_i`` the confidence of example ``i`` (``calibration.py``)
and ``n_g = sum_i g_ig`` the size of group ``g``:

* ``accuracy/group_<g>`` = 1/n_g sum_i g_ig a_i;
* ``ece/group_<g>``: the equal-width ECE (15 bins, ``calibration.py``) over group ``g``;
* ``worst_group_accuracy`` = min_g accuracy_g and ``worst_group_ece`` = max_g ECE_g
  over the non-empty groups [1];
* ``mean_group_accuracy`` = 1/G' sum_g accuracy_g over the G' non-empty groups (the
  group-balanced accuracy).

Every statistic is a sum over examples (``[G]`` counts and correct counts, ``[G, 15]``
bin sums), so the metric streams over batches, devices and hosts in O(G x 15) memory.
Sets without group labels report nothing.

References:
  [1] Sagawa, Koh, Hashimoto, Liang. Distributionally Robust Neural Networks for Group
      Shifts: On the Importance of Regularization for Worst-Case Generalization. ICLR
      2020. https://arxiv.org/abs/1911.08731
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from relbench.metrics.calibration import (
    ECE_BINS,
    binned_result,
    calibration_bins,
    confidence_and_correct,
)
from relbench.metrics.streaming import Predictions, StreamingMetric


def _statistics(p: Predictions):
    if p.groups is None:
        return {}
    confidence, correct = confidence_and_correct(p.log_probs, jnp.maximum(p.labels, 0))
    member = p.groups.astype(jnp.float32) * p.mask[:, None]  # [B, G]
    bins = jax.nn.one_hot(calibration_bins(confidence, ECE_BINS), ECE_BINS)  # [B, 15]
    return {
        "count": jnp.sum(member, axis=0),  # [G]
        "correct": member.T @ correct,  # [G]
        "bin_count": member.T @ bins,  # [G, 15]
        "bin_confidence": member.T @ (bins * confidence[:, None]),
        "bin_correct": member.T @ (bins * correct[:, None]),
    }


def group_results(s) -> dict[str, float]:
    """Per-group accuracy and ECE and the worst group's, from the summed statistics."""
    if not s:
        return {}
    count = np.asarray(s["count"])
    out, accuracies, eces = {}, [], []
    for g in np.flatnonzero(count > 0):
        accuracy = float(s["correct"][g] / count[g])
        ece = binned_result({k: s[k][g] for k in ("bin_count", "bin_confidence", "bin_correct")})
        out[f"accuracy/group_{g}"], out[f"ece/group_{g}"] = accuracy, ece["ece"]
        accuracies.append(accuracy)
        eces.append(ece["ece"])
    if accuracies:
        out["worst_group_accuracy"] = min(accuracies)
        out["worst_group_ece"] = max(eces)
        out["mean_group_accuracy"] = float(np.mean(accuracies))
    return out


GROUP_METRICS = StreamingMetric(_statistics, group_results)

"""Metrics against soft labels: a distribution over classes per example.

Where several raters label each example, or labels are noisy at a known rate, the
target of example ``i`` is a distribution ``q_i`` over the K classes rather than one
class [1]. With ``p_i`` the predictive distribution:

* soft NLL (cross-entropy) = -1/N sum_i sum_k q_ik log p_ik; it equals the entropy of
  ``q`` plus ``KL(q || p)``, so it is minimized by ``p = q``;
* soft KL = 1/N sum_i KL(q_i || p_i) (the soft NLL minus the targets' own entropy);
* soft Brier = 1/N sum_i sum_k (p_ik - q_ik)^2;
* soft ECE: the ECE of ``calibration`` (15 equal-width confidence bins) with the
  correctness ``1[argmax p_i = y_i]`` replaced by its expectation under the raters,
  ``q_i[argmax p_i]``.

With one-hot ``q`` all four reduce to their hard-label counterparts. They are reported
only for evaluation sets whose batches carry ``"soft_label"`` (``Predictions.soft_labels``);
without soft labels the metric contributes nothing.

References:
  [1] Peterson, Battleday, Griffiths, Russakovsky. Human Uncertainty Makes
      Classification More Robust. ICCV 2019. https://arxiv.org/abs/1908.07086
"""

from __future__ import annotations

import jax.numpy as jnp

from relbench.metrics.calibration import binned_result, binned_statistics
from relbench.metrics.streaming import Predictions, StreamingMetric


def _statistics(p: Predictions):
    if p.soft_labels is None:
        return {}
    q = p.soft_labels.astype(p.log_probs.dtype)
    probs = jnp.exp(p.log_probs)
    cross_entropy = -jnp.sum(q * p.log_probs, axis=-1)
    entropy = -jnp.sum(jnp.where(q > 0, q * jnp.log(jnp.where(q > 0, q, 1.0)), 0.0), axis=-1)
    predicted = jnp.argmax(p.log_probs, axis=-1)
    expected_correct = jnp.take_along_axis(q, predicted[:, None], axis=-1)[:, 0]
    return {
        "count": jnp.sum(p.mask),
        "nll": jnp.sum(p.mask * cross_entropy),
        "kl": jnp.sum(p.mask * (cross_entropy - entropy)),
        "brier": jnp.sum(p.mask * jnp.sum(jnp.square(probs - q), axis=-1)),
        **binned_statistics(jnp.max(probs, axis=-1), expected_correct, p.mask),
    }


def _result(s):
    if not s:
        return {}
    n = s["count"]
    return {
        "soft_nll": s["nll"] / n,
        "soft_kl": s["kl"] / n,
        "soft_brier": s["brier"] / n,
        "soft_ece": binned_result(s)["ece"],
    }


SOFT_LABEL_SCORES = StreamingMetric(_statistics, _result)

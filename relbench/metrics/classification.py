"""Core classification metrics as streaming sufficient statistics.

With ``p`` the predictive distribution, ``y`` the label, ``c = max_k p_k`` the
confidence and ``N`` the number of (unmasked) examples:

* accuracy = 1/N * sum 1[argmax p = y]
* NLL = -1/N * sum log p_y
* Brier = 1/N * sum_i sum_k (p_ik - 1[k = y_i])^2  (the multi-class form, in [0, 2])
* ECE = sum_b |sum_{i in b} (1[correct_i] - c_i)| / N over 15 equal-width confidence
  bins ``((b-1)/15, b/15]``, i.e. the bin-count-weighted L1 gap between accuracy and
  confidence [1].

OOD sets have no labels; for them we report the mean confidence and the mean
predictive entropy.

References:
  [1] Naeini, Cooper, Hauskrecht. Obtaining Well Calibrated Probabilities Using
      Bayesian Binning. AAAI 2015. https://ojs.aaai.org/index.php/AAAI/article/view/9602
  [2] Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
      https://arxiv.org/abs/1706.04599
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from relbench.metrics.streaming import Predictions, StreamingMetric

ECE_BINS = 15


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


def calibration_bins(confidence: jax.Array, num_bins: int) -> jax.Array:
    """Bin index of each confidence in equal-width bins ``((b-1)/n, b/n]``, b = 1..n."""
    index = jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1
    return jnp.clip(index, 0, num_bins - 1)


def _ece_statistics(p: Predictions):
    probs, _, correct, _ = _label_terms(p)
    confidence = jnp.max(probs, axis=-1)
    bins = jax.nn.one_hot(calibration_bins(confidence, ECE_BINS), ECE_BINS) * p.mask[:, None]
    return {
        "bin_count": jnp.sum(bins, axis=0),
        "bin_confidence": confidence @ bins,
        "bin_correct": correct @ bins,
    }


def _ece_result(s):
    gap = np.abs(s["bin_correct"] - s["bin_confidence"])
    return {"ece": float(np.sum(gap) / np.sum(s["bin_count"]))}


def _ood_statistics(p: Predictions):
    probs = jnp.exp(p.log_probs)
    entropy = -jnp.sum(probs * p.log_probs, axis=-1)
    return {
        "count": jnp.sum(p.mask),
        "confidence": jnp.sum(p.mask * jnp.max(probs, axis=-1)),
        "entropy": jnp.sum(p.mask * entropy),
    }


def _ood_result(s):
    return {
        "mean_confidence": s["confidence"] / s["count"],
        "mean_entropy": s["entropy"] / s["count"],
    }


PROPER_SCORES = StreamingMetric(_proper_scores_statistics, _proper_scores_result)
EXPECTED_CALIBRATION_ERROR = StreamingMetric(_ece_statistics, _ece_result)
OOD_CONFIDENCE = StreamingMetric(_ood_statistics, _ood_result)

IN_DISTRIBUTION = (PROPER_SCORES, EXPECTED_CALIBRATION_ERROR)
OUT_OF_DISTRIBUTION = (OOD_CONFIDENCE,)


def eval_suite(task: str, is_ood: bool) -> tuple[StreamingMetric, ...]:
    """The metrics reported for an evaluation set: the one place this is decided.

    Classification sets also get the soft-label scores, which report only for sets
    whose batches carry soft labels.
    """
    # Imported here: both modules build on this one.
    from relbench.metrics import regression, soft_labels

    if task == "regression":
        if is_ood:
            return regression.REGRESSION_OUT_OF_DISTRIBUTION
        return regression.REGRESSION_IN_DISTRIBUTION
    if task != "classification":
        raise ValueError(f"no metric suite for task '{task}'; use classification or regression")
    return OUT_OF_DISTRIBUTION if is_ood else (*IN_DISTRIBUTION, soft_labels.SOFT_LABEL_SCORES)

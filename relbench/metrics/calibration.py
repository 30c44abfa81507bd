"""Calibration metrics: does the confidence match the frequency of being right?

Notation: ``p_i`` the predictive distribution of example ``i`` (``[K]``), ``y_i`` its
label, ``c_i = max_k p_ik`` the confidence, ``a_i = 1[argmax_k p_ik = y_i]`` the
correctness, ``N`` the number of unmasked examples. With bins ``b`` holding ``n_b``
examples, ``acc_b = mean_{i in b} a_i`` and ``conf_b = mean_{i in b} c_i``:

* ECE (equal width, L1) = sum_b n_b / N * |acc_b - conf_b|, 15 bins ``((b-1)/15, b/15]``
  of the confidence [1, 2];
* RMS calibration error = sqrt(sum_b n_b / N * (acc_b - conf_b)^2), same bins [3];
* maximum calibration error MCE = max over non-empty bins of |acc_b - conf_b| [1];
* reliability diagram: ``(n_b, conf_b, acc_b)`` per bin (a curve, for plots) [2];
* adaptive (equal-mass) ECE: the ECE formula with 15 bins of equal count, example of
  ascending-confidence rank ``r`` (ties in dataset order) in bin ``floor(15 r / N)`` [3];
* classwise ECE = 1/K sum_k sum_b |sum_{i in b_k} (1[y_i = k] - p_ik)| / N, where ``b_k``
  bins ``p_ik`` itself (15 equal-width bins per class) [4];
* calibration AUC: the AUROC of the confidence ``c_i`` as a detector of correctness
  (correct = positive; see ``ranking.auroc``) [5].

The equal-width statistics are sums (streaming, ``kind="sum"``); the equal-mass ECE and
calibration AUC need the ranking of all examples (``kind="concat"``, ``selective.py``).

References:
  [1] Naeini, Cooper, Hauskrecht. Obtaining Well Calibrated Probabilities Using
      Bayesian Binning. AAAI 2015. https://ojs.aaai.org/index.php/AAAI/article/view/9602
  [2] Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
      https://arxiv.org/abs/1706.04599
  [3] Nixon, Dusenberry, Zhang, Jerfel, Tran. Measuring Calibration in Deep Learning.
      CVPR Workshops 2019. https://arxiv.org/abs/1904.01685
  [4] Kull et al. Beyond temperature scaling: Obtaining well-calibrated multiclass
      probabilities with Dirichlet calibration. NeurIPS 2019. https://arxiv.org/abs/1910.12656
  [5] Kivlichan, Lin, Liu, Vasserman. Measuring and Improving Model-Moderator
      Collaboration using Uncertainty Estimation. WOAH 2021. https://arxiv.org/abs/2107.04212
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from relbench.metrics import ranking
from relbench.metrics.streaming import Predictions, StreamingMetric, sum_in_chunks

ECE_BINS = 15


def calibration_bins(confidence: jax.Array, num_bins: int) -> jax.Array:
    """Bin index of each confidence in equal-width bins ``((b-1)/n, b/n]``, b = 1..n."""
    index = jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1
    return jnp.clip(index, 0, num_bins - 1)


def confidence_and_correct(log_probs: jax.Array, labels: jax.Array):
    """``[B, K]`` log probabilities, ``[B]`` labels -> ``[B]`` confidence, correctness."""
    confidence = jnp.exp(jnp.max(log_probs, axis=-1))
    correct = (jnp.argmax(log_probs, axis=-1) == labels).astype(jnp.float32)
    return confidence, correct


@functools.partial(jax.jit, static_argnames="num_bins")
def binned_statistics(confidence, correct, mask, num_bins: int = ECE_BINS):
    """Per-bin ``count``, sum of confidence, sum of correctness (equal-width bins)."""
    bins = jax.nn.one_hot(calibration_bins(confidence, num_bins), num_bins) * mask[:, None]
    return {
        "bin_count": jnp.sum(bins, axis=0),
        "bin_confidence": confidence @ bins,
        "bin_correct": correct @ bins,
    }


def _binned_gaps(s):
    count = np.asarray(s["bin_count"])
    nonempty = count > 0
    gap = np.abs(s["bin_correct"] - s["bin_confidence"])[nonempty] / count[nonempty]
    return gap, count[nonempty] / np.sum(count)


def binned_result(s) -> dict[str, float]:
    """ECE, RMS calibration error and MCE from the equal-width bin statistics."""
    gap, weight = _binned_gaps(s)
    if len(gap) == 0:
        return {"ece": float("nan"), "rms_calibration_error": float("nan"), "mce": float("nan")}
    return {
        "ece": float(weight @ gap),
        "rms_calibration_error": float(np.sqrt(weight @ gap**2)),
        "mce": float(np.max(gap)),
    }


def reliability_diagram(s) -> dict:
    """Per-bin count, mean confidence and accuracy (NaN for empty bins)."""
    count = np.asarray(s["bin_count"])
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, s["bin_confidence"] / count, np.nan)
        accuracy = np.where(count > 0, s["bin_correct"] / count, np.nan)
    edges = np.linspace(0.0, 1.0, len(count) + 1)
    return {
        "reliability": {
            "edges": edges.tolist(),
            "count": count.tolist(),
            "confidence": confidence.tolist(),
            "accuracy": accuracy.tolist(),
        }
    }


def _binned_from_predictions(p: Predictions):
    return binned_statistics(*confidence_and_correct(p.log_probs, p.labels), p.mask)


@functools.partial(jax.jit, static_argnames="num_bins")
def classwise_statistics(probs, labels, mask, num_bins: int = ECE_BINS):
    """Per class and bin of ``p_ik``: sum of ``1[y_i = k] - p_ik`` and the example count."""
    num_classes = probs.shape[-1]
    bins = jax.nn.one_hot(calibration_bins(probs, num_bins), num_bins)  # [B, K, nb]
    bins = bins * mask[:, None, None]
    residual = jax.nn.one_hot(labels, num_classes, dtype=probs.dtype) - probs  # [B, K]
    return {
        "class_bin_residual": jnp.einsum("bk,bkn->kn", residual, bins),
        "count": jnp.sum(mask),
    }


def classwise_result(s) -> dict[str, float]:
    per_class = np.sum(np.abs(s["class_bin_residual"]), axis=-1) / s["count"]
    return {"classwise_ece": float(np.mean(per_class))}


def _classwise_from_predictions(p: Predictions):
    return classwise_statistics(jnp.exp(p.log_probs), jnp.maximum(p.labels, 0), p.mask)


def adaptive_ece(confidence, correct, num_bins: int = ECE_BINS) -> float:
    """Equal-mass ECE of unmasked per-example ``confidence`` and ``correct`` arrays."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    n = len(confidence)
    if n == 0:
        return float("nan")
    order = np.argsort(confidence, kind="stable")
    bins = np.arange(n) * num_bins // n  # bin of each rank
    gap = np.bincount(bins, correct[order] - confidence[order], minlength=num_bins)
    return float(np.sum(np.abs(gap)) / n)


def calibration_auc(confidence, correct) -> float:
    """AUROC of the confidence as a detector of correct predictions (NaN if all agree)."""
    return ranking.auroc(confidence, np.asarray(correct) > 0)


@functools.partial(jax.jit, static_argnames="num_bins")
def _binned_from_probs(probs, labels, mask, num_bins: int = ECE_BINS):
    confidence = jnp.max(probs, axis=-1)
    correct = (jnp.argmax(probs, axis=-1) == labels).astype(jnp.float32)
    return binned_statistics(confidence, correct, mask, num_bins)


def _with_mask(probs, mask) -> np.ndarray:
    return np.ones(len(probs), np.float32) if mask is None else np.asarray(mask, np.float32)


def expected_calibration_error(probs, labels, mask=None, num_bins: int = ECE_BINS) -> float:
    """Equal-width L1 ECE of ``[N, K]`` probabilities and ``[N]`` labels (whole arrays)."""
    fn = functools.partial(_binned_from_probs, num_bins=num_bins)
    stats = sum_in_chunks(fn, np.asarray(probs), np.asarray(labels), _with_mask(probs, mask))
    return binned_result(stats)["ece"]


def classwise_ece(probs, labels, mask=None, num_bins: int = ECE_BINS) -> float:
    """Classwise ECE of ``[N, K]`` probabilities and ``[N]`` labels (whole arrays)."""
    fn = functools.partial(classwise_statistics, num_bins=num_bins)
    stats = sum_in_chunks(fn, np.asarray(probs), np.asarray(labels), _with_mask(probs, mask))
    return classwise_result(stats)["classwise_ece"]


EQUAL_WIDTH_CALIBRATION = StreamingMetric(
    _binned_from_predictions, binned_result, curves=reliability_diagram
)
CLASSWISE_CALIBRATION = StreamingMetric(_classwise_from_predictions, classwise_result)

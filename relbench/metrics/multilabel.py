"""Metrics of multi-label evaluation sets: K independent 0/1 labels per example.

With member logits ``z_mk`` (``[M, B, K]``), member probabilities ``s_mk =
sigmoid(z_mk)``, the predictive probability of label k ``p_k = 1/M sum_m s_mk``
(``predictive.multilabel_log_probs``, the one place it is computed), labels ``y_k`` in
{0, 1}, predictions ``yhat_k = 1[p_k > 0.5]``, the binary entropy ``h(q) = -q log q -
(1 - q) log(1 - q)`` and ``N`` unmasked examples (padding rows count nowhere):

* ``nll`` = -1/N sum_i sum_k [y_ik log p_ik + (1 - y_ik) log(1 - p_ik)] (nats, summed
  over labels: the NLL of the product of the predictive Bernoullis) [1];
* ``brier`` = 1/N sum_i sum_k (p_ik - y_ik)^2 (summed over labels, in [0, K]) [2];
* ``label_accuracy`` = 1/(N K) sum_ik 1[yhat_ik = y_ik] (Hamming accuracy, 1 - Hamming
  loss); ``subset_accuracy`` = 1/N sum_i 1[yhat_i = y_i] (every label right) [3];
* ``micro_f1`` = 2 TP / (2 TP + FP + FN) over every (example, label) pair;
  ``macro_f1`` = the mean over labels of each label's F1 (0 for a label with no
  positive and no positive prediction, scikit-learn's ``zero_division=0``) [3];
* ``ece``, ``rms_calibration_error``, ``mce``: the equal-width calibration errors of
  ``calibration.py`` (15 bins ``((b-1)/15, b/15]``) over all N K binary predictions,
  the confidence being ``p_ik`` (the probability of label 1) and the outcome ``y_ik``;
  ``classwise_ece``: the mean over labels of each label's own binary ECE [4];
* ``mean_average_precision`` and ``macro_auroc``: each label's average precision and
  AUROC of ``p_k`` against ``y_k`` over the concatenated examples (``ranking.py``),
  averaged over the labels where they are defined (a label needs a positive for AP,
  both values for AUROC; NaN if none is); ``micro_average_precision`` and
  ``micro_auroc``: the same over every (example, label) pair at once [3, 5];
* ensemble diversity, per example and summed over labels: ``predictive_entropy`` =
  sum_k h(p_k), ``expected_member_entropy`` = sum_k 1/M sum_m h(s_mk),
  ``mutual_information`` = sum_k [h(p_k) - 1/M sum_m h(s_mk)] (each label's term >= 0
  by concavity, clipped at 0 against rounding) [6], ``pairwise_kl`` = 1/(M(M-1))
  sum_{m != n} sum_k KL(Bern(s_mk) || Bern(s_nk)); ``disagreement`` = the mean over
  labels of the fraction of member pairs whose predictions ``1[s_mk > 0.5]`` differ,
  ``2 c_k (M - c_k) / (M(M-1))`` with ``c_k`` members predicting 1. One member: MI,
  KL and disagreement are 0 for every input, so they are omitted;
* uncertainty scores, larger = more uncertain (OOD sets are pooled with the reference
  set on them: ``ood.py``): ``entropy`` (``predictive_entropy`` above),
  ``mutual_information``, ``joint_energy`` = -1/M sum_m sum_k log(1 + exp(z_mk)) (the
  negated JointEnergy of [7]) and, where the extras carry it, ``variance``
  (``scores.extras_variance``).

OOD sets report the diversity means and the scores.

References:
  [1] Gneiting, Raftery. Strictly Proper Scoring Rules, Prediction, and Estimation.
      JASA 2007. https://doi.org/10.1198/016214506000001437
  [2] Brier. Verification of Forecasts Expressed in Terms of Probability. Monthly
      Weather Review 1950. https://doi.org/10.1175/1520-0493(1950)078<0001:VOFEIT>2.0.CO;2
  [3] Tsoumakas, Katakis, Vlahavas. Mining Multi-label Data. Data Mining and Knowledge
      Discovery Handbook 2010. https://doi.org/10.1007/978-0-387-09823-4_34
  [4] Kull et al. Beyond temperature scaling: Obtaining well-calibrated multiclass
      probabilities with Dirichlet calibration. NeurIPS 2019. https://arxiv.org/abs/1910.12656
  [5] Davis, Goadrich. The Relationship Between Precision-Recall and ROC Curves. ICML
      2006. https://doi.org/10.1145/1143844.1143874
  [6] Houlsby, Huszar, Ghahramani, Lengyel. Bayesian Active Learning for Classification
      and Preference Learning. 2011. https://arxiv.org/abs/1112.5745
  [7] Wang, Liu, Bocchieri, Li. Can multi-label classification networks know what they
      don't know? NeurIPS 2021. https://arxiv.org/abs/2109.14162
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from relbench.metrics import ranking
from relbench.metrics.calibration import (
    ECE_BINS,
    binned_result,
    binned_statistics,
    calibration_bins,
    classwise_result,
    reliability_diagram,
)
from relbench.metrics.diversity import informative
from relbench.metrics.predictive import multilabel_log_probs
from relbench.metrics.scores import extras_variance
from relbench.metrics.streaming import Predictions, StreamingMetric, evaluate_arrays

DIVERSITY_NAMES = (
    "predictive_entropy",
    "expected_member_entropy",
    "mutual_information",
    "disagreement",
    "pairwise_kl",
)


def _binary_entropy(log_p: jax.Array, log_not_p: jax.Array) -> jax.Array:
    """Elementwise ``h(p)`` from ``log p`` and ``log(1 - p)`` (0 log 0 = 0)."""
    terms = [jnp.where(jnp.isfinite(lq), jnp.exp(lq) * lq, 0.0) for lq in (log_p, log_not_p)]
    return -(terms[0] + terms[1])


def _outputs(p: Predictions):
    """``[B, K]`` ``p``, ``log p``, ``log(1 - p)``, the 0/1 labels and ``[B, 1]`` mask."""
    log_p, log_not_p = multilabel_log_probs(p.logits)
    labels = (p.labels > 0.5).astype(log_p.dtype)
    return jnp.exp(log_p), log_p, log_not_p, labels, p.mask[:, None]


def _scores_statistics(p: Predictions):
    probs, log_p, log_not_p, labels, mask = _outputs(p)
    predicted = (probs > 0.5).astype(probs.dtype)
    right = (predicted == labels).astype(probs.dtype)
    return {
        "count": jnp.sum(mask),
        "nll": -jnp.sum(mask * jnp.where(labels > 0, log_p, log_not_p)),
        "brier": jnp.sum(mask * jnp.square(probs - labels)),
        "correct_labels": jnp.sum(mask * right),
        "correct_sets": jnp.sum(mask[:, 0] * jnp.prod(right, axis=-1)),
        "true_positives": jnp.sum(mask * predicted * labels, axis=0),  # [K]
        "false_positives": jnp.sum(mask * predicted * (1 - labels), axis=0),
        "false_negatives": jnp.sum(mask * (1 - predicted) * labels, axis=0),
    }


def _f1(tp, fp, fn) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-300), 0.0)


def _scores_result(s):
    n = s["count"]
    tp, fp, fn = s["true_positives"], s["false_positives"], s["false_negatives"]
    return {
        "nll": s["nll"] / n,
        "brier": s["brier"] / n,
        "label_accuracy": s["correct_labels"] / (n * len(tp)),
        "subset_accuracy": s["correct_sets"] / n,
        "micro_f1": float(_f1(np.sum(tp), np.sum(fp), np.sum(fn))),
        "macro_f1": float(np.mean(_f1(tp, fp, fn))),
    }


def _calibration_statistics(p: Predictions):
    probs, _, _, labels, mask = _outputs(p)
    mask = jnp.broadcast_to(mask, probs.shape)
    return binned_statistics(probs.reshape(-1), labels.reshape(-1), mask.reshape(-1))


def _labelwise_calibration_statistics(p: Predictions):
    probs, _, _, labels, mask = _outputs(p)
    bins = jax.nn.one_hot(calibration_bins(probs, ECE_BINS), ECE_BINS) * mask[..., None]
    return {
        "class_bin_residual": jnp.einsum("bk,bkn->kn", labels - probs, bins),  # [K, bins]
        "count": jnp.sum(mask),
    }


def _ranking_statistics(p: Predictions):
    probs, _, _, labels, _ = _outputs(p)
    return {"probs": probs, "labels": labels}


def _mean_defined(values: list[float]) -> float:
    defined = [v for v in values if np.isfinite(v)]
    return float(np.mean(defined)) if defined else float("nan")


def _ranking_result(s):
    probs, positives = s["probs"], s["labels"] > 0.5
    labels = range(probs.shape[-1])
    return {
        "mean_average_precision": _mean_defined(
            [ranking.average_precision(probs[:, k], positives[:, k]) for k in labels]
        ),
        "macro_auroc": _mean_defined([ranking.auroc(probs[:, k], positives[:, k]) for k in labels]),
        "micro_average_precision": ranking.average_precision(probs, positives),
        "micro_auroc": ranking.auroc(probs, positives),
    }


def per_example_diversity(logits: jax.Array) -> dict[str, jax.Array]:
    """``[M, B, K]`` member logits -> ``{name: [B]}`` of the module docstring."""
    members = logits.shape[0]
    log_p, log_not_p = multilabel_log_probs(logits)
    member_log_p, member_log_not_p = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    member_p, member_not_p = jnp.exp(member_log_p), jnp.exp(member_log_not_p)
    predictive_entropy = _binary_entropy(log_p, log_not_p)  # [B, K]
    member_entropy = jnp.mean(_binary_entropy(member_log_p, member_log_not_p), axis=0)
    pairs = max(members * (members - 1), 1)  # no pairs for M = 1: the sums below are 0
    # sum_{m, n} KL(s_m || s_n) = M sum_m [s_m log s_m + (1 - s_m) log(1 - s_m)]
    #   - sum_m s_m sum_n log s_n - sum_m (1 - s_m) sum_n log(1 - s_n), per label.
    self_term = members * jnp.sum(member_p * member_log_p + member_not_p * member_log_not_p, axis=0)
    cross_term = jnp.sum(member_p, 0) * jnp.sum(member_log_p, 0) + jnp.sum(
        member_not_p, 0
    ) * jnp.sum(member_log_not_p, 0)
    votes = jnp.sum((logits > 0).astype(logits.dtype), axis=0)  # [B, K]
    values = {
        "predictive_entropy": jnp.sum(predictive_entropy, -1),
        "expected_member_entropy": jnp.sum(member_entropy, -1),
        "mutual_information": jnp.sum(jnp.maximum(predictive_entropy - member_entropy, 0.0), -1),
        "disagreement": jnp.mean(2 * votes * (members - votes), -1) / pairs,
        "pairwise_kl": jnp.sum(jnp.maximum(self_term - cross_term, 0.0), -1) / pairs,
    }
    return informative(values, members)


def _diversity_statistics(p: Predictions):
    values = per_example_diversity(p.logits)
    return {"count": jnp.sum(p.mask), **{k: jnp.sum(p.mask * v) for k, v in values.items()}}


def _diversity_result(s) -> dict[str, float]:
    return {name: s[name] / s["count"] for name in DIVERSITY_NAMES if name in s}


def uncertainty_scores(p: Predictions) -> dict[str, jax.Array]:
    """``{name: [B]}`` of the module docstring's scores, larger = more uncertain."""
    diversity = per_example_diversity(p.logits)
    scores = {
        "entropy": diversity["predictive_entropy"],
        **{k: diversity[k] for k in ("mutual_information",) if k in diversity},
        "joint_energy": -jnp.mean(jnp.sum(jax.nn.softplus(p.logits), axis=-1), axis=0),
    }
    variance = extras_variance(p.extras)
    if variance is not None:
        scores["variance"] = variance
    return {k: v.astype(jnp.float32) for k, v in scores.items()}


MULTILABEL_SCORES = StreamingMetric(_scores_statistics, _scores_result)
MULTILABEL_CALIBRATION = StreamingMetric(
    _calibration_statistics, binned_result, curves=reliability_diagram
)
LABELWISE_CALIBRATION = StreamingMetric(_labelwise_calibration_statistics, classwise_result)
LABEL_RANKING = StreamingMetric(_ranking_statistics, _ranking_result, kind="concat")
MULTILABEL_DIVERSITY = StreamingMetric(_diversity_statistics, _diversity_result)
# Per-example scores; OOD detection pairs an OOD set's with the reference set's.
MULTILABEL_UNCERTAINTY_SCORES = StreamingMetric(
    uncertainty_scores, lambda totals: {}, kind="concat"
)

MULTILABEL_IN_DISTRIBUTION = (
    MULTILABEL_SCORES,
    MULTILABEL_CALIBRATION,
    LABELWISE_CALIBRATION,
    LABEL_RANKING,
    MULTILABEL_DIVERSITY,
    MULTILABEL_UNCERTAINTY_SCORES,
)
MULTILABEL_OUT_OF_DISTRIBUTION = (MULTILABEL_DIVERSITY, MULTILABEL_UNCERTAINTY_SCORES)


def multilabel_metrics(logits, labels, mask=None) -> dict[str, float]:
    """Every in-distribution metric of ``[M, N, K]`` member logits and ``[N, K]`` 0/1
    labels (whole arrays)."""
    logits = jnp.asarray(logits, jnp.float32)
    n = logits.shape[1]
    predictions = Predictions(
        logits=logits,
        log_probs=multilabel_log_probs(logits)[0],
        labels=jnp.asarray(labels, jnp.float32),
        mask=jnp.ones(n) if mask is None else jnp.asarray(np.asarray(mask), jnp.float32),
    )
    return evaluate_arrays(MULTILABEL_IN_DISTRIBUTION, predictions)

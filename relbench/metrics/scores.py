"""Per-example uncertainty scores, used for OOD detection and selective prediction.

With member logits ``z_m`` (``[M, B, K]``), member distributions ``p_m = softmax(z_m)``
and the predictive distribution ``p = 1/M sum_m p_m`` (``predictive.py``), every score
is oriented so that **larger means more uncertain** (more likely OOD, sooner deferred):

* ``max_prob``: ``-max_k p_k`` (the maximum softmax probability, negated) [1];
* ``entropy``: predictive entropy ``H[p] = -sum_k p_k log p_k``;
* ``mutual_information``: ``H[p] - 1/M sum_m H[p_m]`` (the epistemic part, BALD) [2],
  clipped at 0 against rounding; only for M > 1 (0 for every input of one member);
* ``max_logit``: ``-1/M sum_m max_k z_mk`` [3];
* ``energy``: ``1/M sum_m -log sum_k exp(z_mk)`` (the free energy at temperature 1) [4];
* ``variance``: where the model's extras carry ``"variance"`` (``[M, B]`` or
  ``[M, B, ...]``, e.g. an SNGP head's GP predictive variance), its mean over members
  and trailing axes [5];
* every ``extras["score/<name>"]`` (``[M, B]``) a post-hoc detector adds
  (``relbench.posthoc.feature_detectors``: Mahalanobis, KNN, ViM...), as ``<name>``,
  its mean over members.

References:
  [1] Hendrycks, Gimpel. A Baseline for Detecting Misclassified and Out-of-Distribution
      Examples in Neural Networks. ICLR 2017. https://arxiv.org/abs/1610.02136
  [2] Houlsby, Huszar, Ghahramani, Lengyel. Bayesian Active Learning for Classification
      and Preference Learning. 2011. https://arxiv.org/abs/1112.5745
  [3] Hendrycks et al. Scaling Out-of-Distribution Detection for Real-World Settings.
      ICML 2022. https://arxiv.org/abs/1911.11132
  [4] Liu, Wang, Owens, Li. Energy-based Out-of-distribution Detection. NeurIPS 2020.
      https://arxiv.org/abs/2010.03759
  [5] Liu et al. Simple and Principled Uncertainty Estimation with Deterministic Deep
      Learning via Distance Awareness. NeurIPS 2020. https://arxiv.org/abs/2006.10108
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from relbench.metrics.streaming import Predictions, StreamingMetric

VARIANCE_KEY = "variance"
SCORE_PREFIX = "score/"


def entropy(log_probs: jax.Array) -> jax.Array:
    """``[..., K]`` log probabilities -> ``[...]`` entropy in nats (0 log 0 = 0)."""
    terms = jnp.where(jnp.isfinite(log_probs), jnp.exp(log_probs) * log_probs, 0.0)
    return -jnp.sum(terms, axis=-1)


def expected_member_entropy(logits: jax.Array) -> jax.Array:
    """``[M, B, K]`` logits -> ``[B]`` mean over members of each member's entropy."""
    return jnp.mean(entropy(jax.nn.log_softmax(logits, axis=-1)), axis=0)


def mutual_information(logits: jax.Array, log_probs: jax.Array) -> jax.Array:
    """``[B]`` predictive entropy minus expected member entropy, clipped at 0."""
    return jnp.maximum(entropy(log_probs) - expected_member_entropy(logits), 0.0)


def extras_variance(extras) -> jax.Array | None:
    """``[M, B, ...]`` variance in the extras -> ``[B]``, or None if the model has none."""
    if VARIANCE_KEY not in extras:
        return None
    variance = jnp.mean(extras[VARIANCE_KEY], axis=0)  # [M, B, ...] -> [B, ...]
    return jnp.mean(variance.reshape(variance.shape[0], -1), axis=-1)


def uncertainty_scores(p: Predictions) -> dict[str, jax.Array]:
    """Every score of the module docstring, ``{name: [B]}``, larger = more uncertain."""
    scores = {
        "max_prob": -jnp.exp(jnp.max(p.log_probs, axis=-1)),
        "entropy": entropy(p.log_probs),
        "max_logit": -jnp.mean(jnp.max(p.logits, axis=-1), axis=0),
        "energy": -jnp.mean(jax.nn.logsumexp(p.logits, axis=-1), axis=0),
    }
    if p.logits.shape[0] > 1:  # one member's mutual information is constant 0
        scores["mutual_information"] = mutual_information(p.logits, p.log_probs)
    variance = extras_variance(p.extras)
    if variance is not None:
        scores["variance"] = variance
    for key, value in p.extras.items():
        if key.startswith(SCORE_PREFIX):
            scores[key.removeprefix(SCORE_PREFIX)] = jnp.mean(value, axis=0)  # [M, B] -> [B]
    return {k: v.astype(jnp.float32) for k, v in scores.items()}


# Per-example scores of a whole set; OOD detection pairs an OOD set's with the
# in-distribution reference set's (``ood.detection_results``). No scalar results.
UNCERTAINTY_SCORES = StreamingMetric(uncertainty_scores, lambda totals: {}, kind="concat")

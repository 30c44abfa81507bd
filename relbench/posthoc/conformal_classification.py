"""Split conformal prediction sets for classification: LAC, APS, RAPS and SAPS scores,
marginal or class-conditional (Mondrian).

A nonconformity score ``s(x, y)`` (larger = the label fits the input worse) is computed
on the ``n`` examples of the calibration split (the validation set by default) at their
true labels. With ``alpha = 1 - coverage``, the threshold is the finite-sample
conformal quantile [1, 2]

    q = the ceil((n + 1)(1 - alpha))-th smallest calibration score
      (the empirical quantile at level ceil((n + 1)(1 - alpha)) / n; +inf if that
      rank exceeds n),

and the prediction set of a new input is ``C(x) = {y : s(x, y) <= q}``. If calibration
and test examples are exchangeable, ``P(y in C(x)) >= 1 - alpha``; if the scores have no
ties, also ``<= 1 - alpha + 1 / (n + 1)`` [1]. With ``class_conditional`` (Mondrian
conformal prediction [3]) each class ``k`` has its own threshold from the calibration
examples of that class, and the guarantee holds given each class:
``P(y in C(x) | y = k) >= 1 - alpha``.

The scores, of the predictive distribution ``p`` (the mean of the member softmaxes)
with ``o(y)`` the rank of ``p_y`` (1 for the most probable class):

* ``conformal_lac`` (least ambiguous set-valued classifier, THR) [4]: ``1 - p_y``;
* ``conformal_aps`` (adaptive prediction sets) [5]: ``sum_{j : p_j >= p_y} p_j``, the
  mass of the classes at least as probable as ``y``;
* ``conformal_raps`` (regularized APS) [6]: the APS score plus
  ``penalty * max(o(y) - k_reg, 0)``, which charges for every class beyond the first
  ``k_reg`` and so keeps sets small;
* ``conformal_saps`` (sorted APS) [7]: ``p_max`` for the top class, and
  ``p_max + weight * (o(y) - 1)`` for the others: only the top probability and the rank
  count, not the long tail of small probabilities.

All four are the non-randomized variants (no uniform draw at test time, so ``apply``
is a pure function of the outputs); they are still tie-free for continuous
probabilities, so both bounds above hold.

The step leaves the logits as they are and adds ``extras["prediction_set"]``,
``[1, B, K]`` 0/1 membership; ``relbench.metrics.conformal`` turns it into empirical
coverage, mean set size, size-stratified and worst class-conditional coverage on every
evaluation set. The fit needs the calibration scores themselves (a quantile is not a
sum), ``n`` scalars.

References:
  [1] Vovk, Gammerman, Shafer. Algorithmic Learning in a Random World. Springer 2005.
  [2] Angelopoulos, Bates. A Gentle Introduction to Conformal Prediction and
      Distribution-Free Uncertainty Quantification. 2021. https://arxiv.org/abs/2107.07511
  [3] Vovk. Conditional validity of inductive conformal predictors. ACML 2012.
      https://arxiv.org/abs/1209.2673
  [4] Sadinle, Lei, Wasserman. Least Ambiguous Set-Valued Classifiers with Bounded
      Error Levels. JASA 2019. https://arxiv.org/abs/1609.00451
  [5] Romano, Sesia, Candes. Classification with Valid and Adaptive Coverage. NeurIPS
      2020. https://arxiv.org/abs/2006.02544
  [6] Angelopoulos, Bates, Malik, Jordan. Uncertainty Sets for Image Classifiers using
      Conformal Prediction. ICLR 2021. https://arxiv.org/abs/2009.14193
  [7] Huang, Xi, Zhang, Wei. Conformal Prediction for Deep Classifier via Label
      Ranking. ICML 2024. https://arxiv.org/abs/2310.06430
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.metrics.conformal import PREDICTION_SET
from relbench.metrics.predictive import predictive_log_probs
from relbench.posthoc.step import Outputs, PosthocStep, Targets

Score = Callable[[jax.Array], jax.Array]  # [B, K] probabilities -> [B, K] scores


def ranks(probs: jax.Array) -> jax.Array:
    """``[B, K]`` -> ``[B, K]`` the rank of every class, 1 for the most probable."""
    order = jnp.argsort(-probs, axis=-1)
    return jnp.argsort(order, axis=-1) + 1


def lac_scores(probs: jax.Array) -> jax.Array:
    return 1.0 - probs


def aps_scores(probs: jax.Array) -> jax.Array:
    """``sum_{j: p_j >= p_y} p_j`` for every candidate ``y``: the cumulative sum of the
    sorted probabilities, read at each class's rank."""
    cumulative = jnp.cumsum(-jnp.sort(-probs, axis=-1), axis=-1)  # [B, K], descending
    return jnp.take_along_axis(cumulative, ranks(probs) - 1, axis=-1)


def raps_scores(probs: jax.Array, penalty: float, k_reg: int) -> jax.Array:
    return aps_scores(probs) + penalty * jnp.maximum(ranks(probs) - k_reg, 0)


def saps_scores(probs: jax.Array, weight: float) -> jax.Array:
    top = jnp.max(probs, axis=-1, keepdims=True)
    return top + weight * (ranks(probs) - 1)


def conformal_quantile(scores: jax.Array, mask: jax.Array, coverage: float) -> jax.Array:
    """The ``ceil((n + 1) coverage)``-th smallest of the ``scores [N]`` where ``mask``
    (``n = sum(mask)``); +inf where that rank exceeds ``n``."""
    n = jnp.sum(mask)
    rank = jnp.ceil((n + 1) * coverage).astype(jnp.int32)
    ordered = jnp.sort(jnp.where(mask, scores, jnp.inf))
    value = ordered[jnp.clip(rank - 1, 0, scores.shape[0] - 1)]
    return jnp.where(rank > n, jnp.inf, value)


def conformal_step(name: str, score: Score, split: str, coverage: float, class_conditional: bool):
    """The split conformal step of one score: thresholds on the calibration split's true
    label scores, sets ``{y : s(x, y) <= q}`` everywhere."""
    if not 0.0 < coverage < 1.0:
        raise UsageError(f"{name} needs 0 < coverage < 1, got {coverage}")

    def label_scores(logits):
        probs = jnp.exp(predictive_log_probs(logits.astype(jnp.float32)))
        return score(probs)  # [B, K]

    def fit(outputs: Outputs, targets: Targets):
        logits, _ = outputs
        labels = targets["label"]
        k = logits.shape[-1]
        true = jnp.take_along_axis(label_scores(logits), labels[:, None], axis=-1)[:, 0]
        if class_conditional:
            members = labels[None, :] == jnp.arange(k)[:, None]  # [K, N]
            thresholds = jax.vmap(lambda m: conformal_quantile(true, m, coverage))(members)
        else:
            thresholds = jnp.full(k, conformal_quantile(true, jnp.ones_like(true, bool), coverage))
        return {"threshold": thresholds}

    def apply(outputs: Outputs, params) -> Outputs:
        logits, extras = outputs
        members = label_scores(logits) <= params["threshold"]  # [B, K]
        return logits, {**extras, PREDICTION_SET: members[None].astype(jnp.float32)}

    return PosthocStep(fit=fit, apply=apply, split=split)


def conformal_lac(
    split: str = "validation", coverage: float = 0.9, class_conditional: bool = False
) -> PosthocStep:
    """Args:
    split: the calibration set.
    coverage: the target coverage ``1 - alpha``.
    class_conditional: one threshold per class (Mondrian), else one for all.
    """
    return conformal_step("conformal_lac", lac_scores, split, coverage, class_conditional)


def conformal_aps(
    split: str = "validation", coverage: float = 0.9, class_conditional: bool = False
) -> PosthocStep:
    """Args:
    split: the calibration set.
    coverage: the target coverage ``1 - alpha``.
    class_conditional: one threshold per class (Mondrian), else one for all.
    """
    return conformal_step("conformal_aps", aps_scores, split, coverage, class_conditional)


def conformal_raps(
    split: str = "validation",
    coverage: float = 0.9,
    class_conditional: bool = False,
    penalty: float = 0.01,
    k_reg: int = 2,
) -> PosthocStep:
    """Args:
    split: the calibration set.
    coverage: the target coverage ``1 - alpha``.
    class_conditional: one threshold per class (Mondrian), else one for all.
    penalty: ``lambda``, the charge for every class ranked beyond ``k_reg``.
    k_reg: classes that are free of the penalty.
    """
    if penalty < 0 or k_reg < 0:
        raise UsageError(
            f"conformal_raps needs penalty >= 0 and k_reg >= 0, got {penalty}, {k_reg}"
        )

    def score(probs):
        return raps_scores(probs, penalty, k_reg)

    return conformal_step("conformal_raps", score, split, coverage, class_conditional)


def conformal_saps(
    split: str = "validation",
    coverage: float = 0.9,
    class_conditional: bool = False,
    weight: float = 0.2,
) -> PosthocStep:
    """Args:
    split: the calibration set.
    coverage: the target coverage ``1 - alpha``.
    class_conditional: one threshold per class (Mondrian), else one for all.
    weight: ``lambda``, the score added per rank below the top class.
    """
    if weight <= 0:
        raise UsageError(f"conformal_saps needs weight > 0, got {weight}")

    def score(probs):
        return saps_scores(probs, weight)

    return conformal_step("conformal_saps", score, split, coverage, class_conditional)

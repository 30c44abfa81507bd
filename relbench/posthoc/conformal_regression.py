"""Split conformal prediction intervals for regression: absolute residuals, and
residuals normalized by the predictive standard deviation.

On the ``n`` examples of the calibration split (the validation set by default), with
the predictive mean ``mu(x)`` and standard deviation ``sigma(x)`` of the members'
Gaussian mixture (``relbench.metrics.regression``), every output dimension gets the
threshold ``q`` = the ``ceil((n + 1)(1 - alpha))``-th smallest calibration score
(``relbench.posthoc.conformal_classification.conformal_quantile``), and

* ``conformal_residual`` [1, 2]: score ``|y - mu(x)|``, interval ``mu(x) +- q``;
* ``conformal_normalized`` [2, 3]: score ``|y - mu(x)| / sigma(x)``, interval
  ``mu(x) +- q sigma(x)``: as wide as the model is uncertain, so adaptive where the
  Gaussian head's variance tracks the error;
* ``conformal_cqr`` [4], conformalized quantile regression: with the lower and upper
  quantiles ``q_lo(x)``, ``q_hi(x)`` of a quantile head (the members' mean of
  ``extras["quantile_lower"]``, ``["quantile_upper"]``: ``config.likelihood.
  quantile_coverage`` trains them by the pinball loss, ``relbench.layers.gaussian``),
  score ``E = max(q_lo(x) - y, y - q_hi(x))``, interval ``[q_lo(x) - q, q_hi(x) + q]``:
  the head's interval, widened (or narrowed, ``q < 0``) until it covers. Its width
  follows the data's spread without a Gaussian's symmetry or tails.

Exchangeability gives ``P(y in interval) >= 1 - alpha`` per output dimension, and at
most ``1 - alpha + 1 / (n + 1)`` for tie-free scores. The step leaves the outputs as
they are and adds ``extras["interval_lower"]``, ``["interval_upper"]`` (``[1, B, O]``)
and ``["interval_alpha"]`` (``[1, B]``), which ``relbench.metrics.conformal`` reports as
``interval_coverage``, ``interval_width`` and ``winkler_score`` on every evaluation set.

References:
  [1] Lei, G'Sell, Rinaldo, Tibshirani, Wasserman. Distribution-Free Predictive
      Inference for Regression. JASA 2018. https://arxiv.org/abs/1604.04173
  [2] Angelopoulos, Bates. A Gentle Introduction to Conformal Prediction and
      Distribution-Free Uncertainty Quantification. 2021. https://arxiv.org/abs/2107.07511
  [3] Papadopoulos, Proedrou, Vovk, Gammerman. Inductive Confidence Machines for
      Regression. ECML 2002. https://doi.org/10.1007/3-540-36755-1_29
  [4] Romano, Patterson, Candes. Conformalized Quantile Regression. NeurIPS 2019.
      https://arxiv.org/abs/1905.03222
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.layers.gaussian import QUANTILE_LOWER, QUANTILE_UPPER
from relbench.metrics.conformal import INTERVAL_ALPHA, INTERVAL_LOWER, INTERVAL_UPPER
from relbench.metrics.regression import mixture_moments
from relbench.posthoc.conformal_classification import conformal_quantile
from relbench.posthoc.step import Outputs, PosthocStep, Targets


def interval_step(name: str, split: str, coverage: float, kind: str) -> PosthocStep:
    """The split conformal interval of one ``kind`` of score: ``"residual"``,
    ``"normalized"`` or ``"quantile"``."""
    if not 0.0 < coverage < 1.0:
        raise UsageError(f"{name} needs 0 < coverage < 1, got {coverage}")

    def band(outputs: Outputs):
        """``(lower, upper, scale)`` ``[B, O]`` each: the interval the threshold widens by
        ``threshold * scale`` on either side."""
        means, extras = outputs
        if kind == "quantile":
            if QUANTILE_LOWER not in extras:
                raise UsageError(
                    f"{name} needs a quantile head's extras['{QUANTILE_LOWER}'] and "
                    f"['{QUANTILE_UPPER}']; train the model with "
                    "--config.likelihood.quantile_coverage=0.9"
                )
            lower, upper = extras[QUANTILE_LOWER].mean(0), extras[QUANTILE_UPPER].mean(0)
            return lower, upper, jnp.ones_like(lower)
        if "variance" not in extras:
            raise UsageError(f"{name} needs a Gaussian head's extras['variance']")
        mean, variance = mixture_moments(means, extras["variance"])  # [B, O] each
        return mean, mean, jnp.sqrt(variance) if kind == "normalized" else jnp.ones_like(mean)

    def fit(outputs: Outputs, targets: Targets):
        lower, upper, scale = band(outputs)
        y = targets["label"].reshape(lower.shape).astype(lower.dtype)
        scores = jnp.maximum(lower - y, y - upper) / scale  # [N, O]; |y - mu| / scale
        keep = jnp.ones(scores.shape[0], bool)
        return {"threshold": jax.vmap(lambda s: conformal_quantile(s, keep, coverage))(scores.T)}

    def apply(outputs: Outputs, params) -> Outputs:
        lower, upper, scale = band(outputs)
        half_width = params["threshold"] * scale
        logits, extras = outputs
        intervals = {
            INTERVAL_LOWER: (lower - half_width)[None],
            INTERVAL_UPPER: (upper + half_width)[None],
            INTERVAL_ALPHA: jnp.full((1, lower.shape[0]), 1.0 - coverage),
        }
        return logits, {**extras, **intervals}

    return PosthocStep(fit=fit, apply=apply, split=split, tasks=("regression",))


def conformal_residual(split: str = "validation", coverage: float = 0.9) -> PosthocStep:
    """Args:
    split: the calibration set.
    coverage: the target coverage ``1 - alpha`` of every output dimension.
    """
    return interval_step("conformal_residual", split, coverage, "residual")


def conformal_normalized(split: str = "validation", coverage: float = 0.9) -> PosthocStep:
    """Args:
    split: the calibration set.
    coverage: the target coverage ``1 - alpha`` of every output dimension.
    """
    return interval_step("conformal_normalized", split, coverage, "normalized")


def conformal_cqr(split: str = "validation", coverage: float = 0.9) -> PosthocStep:
    """Args:
    split: the calibration set.
    coverage: the target coverage ``1 - alpha`` of every output dimension (whatever the
      head's ``quantile_coverage``: the threshold corrects it).
    """
    return interval_step("conformal_cqr", split, coverage, "quantile")

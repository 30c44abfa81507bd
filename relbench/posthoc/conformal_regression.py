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
  Gaussian head's variance tracks the error.

Exchangeability gives ``P(y in interval) >= 1 - alpha`` per output dimension, and at
most ``1 - alpha + 1 / (n + 1)`` for tie-free scores. The step leaves the outputs as
they are and adds ``extras["interval_lower"]``, ``["interval_upper"]`` (``[1, B, O]``)
and ``["interval_alpha"]`` (``[1, B]``), which ``relbench.metrics.conformal`` reports as
``interval_coverage``, ``interval_width`` and ``winkler_score`` on every evaluation set.

Conformalized quantile regression (CQR, Romano et al. 2019) needs a pinball-loss
quantile head, which relbench's likelihoods do not have yet: it is not offered.

References:
  [1] Lei, G'Sell, Rinaldo, Tibshirani, Wasserman. Distribution-Free Predictive
      Inference for Regression. JASA 2018. https://arxiv.org/abs/1604.04173
  [2] Angelopoulos, Bates. A Gentle Introduction to Conformal Prediction and
      Distribution-Free Uncertainty Quantification. 2021. https://arxiv.org/abs/2107.07511
  [3] Papadopoulos, Proedrou, Vovk, Gammerman. Inductive Confidence Machines for
      Regression. ECML 2002. https://doi.org/10.1007/3-540-36755-1_29
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.metrics.conformal import INTERVAL_ALPHA, INTERVAL_LOWER, INTERVAL_UPPER
from relbench.metrics.regression import mixture_moments
from relbench.posthoc.conformal_classification import conformal_quantile
from relbench.posthoc.step import Outputs, PosthocStep, Targets


def interval_step(name: str, split: str, coverage: float, normalized: bool) -> PosthocStep:
    if not 0.0 < coverage < 1.0:
        raise UsageError(f"{name} needs 0 < coverage < 1, got {coverage}")

    def moments(outputs: Outputs):
        means, extras = outputs
        if "variance" not in extras:
            raise UsageError(f"{name} needs a Gaussian head's extras['variance']")
        mean, variance = mixture_moments(means, extras["variance"])  # [B, O] each
        return mean, jnp.sqrt(variance) if normalized else jnp.ones_like(mean)

    def fit(outputs: Outputs, targets: Targets):
        mean, scale = moments(outputs)
        y = targets["label"].reshape(mean.shape).astype(mean.dtype)
        scores = jnp.abs(y - mean) / scale  # [N, O]
        keep = jnp.ones(scores.shape[0], bool)
        return {"threshold": jax.vmap(lambda s: conformal_quantile(s, keep, coverage))(scores.T)}

    def apply(outputs: Outputs, params) -> Outputs:
        mean, scale = moments(outputs)
        half_width = params["threshold"] * scale
        logits, extras = outputs
        intervals = {
            INTERVAL_LOWER: (mean - half_width)[None],
            INTERVAL_UPPER: (mean + half_width)[None],
            INTERVAL_ALPHA: jnp.full((1, mean.shape[0]), 1.0 - coverage),
        }
        return logits, {**extras, **intervals}

    return PosthocStep(fit=fit, apply=apply, split=split, tasks=("regression",))


def conformal_residual(split: str = "validation", coverage: float = 0.9) -> PosthocStep:
    """Args:
    split: the calibration set.
    coverage: the target coverage ``1 - alpha`` of every output dimension.
    """
    return interval_step("conformal_residual", split, coverage, normalized=False)


def conformal_normalized(split: str = "validation", coverage: float = 0.9) -> PosthocStep:
    """Args:
    split: the calibration set.
    coverage: the target coverage ``1 - alpha`` of every output dimension.
    """
    return interval_step("conformal_normalized", split, coverage, normalized=True)

"""Regression metrics for Gaussian predictions, exact for a mixture of members.

A regression model returns member means ``mu_m`` in the logits' place, ``[M, B, O]``,
and member variances ``sigma_m^2`` in ``extras["variance"]``, ``[M, B, O]``. The
predictive distribution of each output is the equal-weight mixture

    F(y) = 1/M sum_m Phi((y - mu_m) / sigma_m),

with mean ``mu = 1/M sum_m mu_m`` and variance
``1/M sum_m (sigma_m^2 + mu_m^2) - mu^2``. Every metric below uses this mixture and no
approximation of it (for M = 1 it is the member's Gaussian):

* NLL = -1/N sum_i log 1/M sum_m prod_o N(y_io; mu_mio, sigma_mio^2)  (per example,
  outputs independent given the member);
* RMSE = sqrt(1/(N O) sum_io (y_io - mu_io)^2) of the predictive mean;
* CRPS(F, y) = E|X - y| - 1/2 E|X - X'| [1], averaged over examples and outputs. With
  ``A(m, s^2) = E|Z|`` for ``Z ~ N(m, s^2)`` ``= m (2 Phi(m/s) - 1) + 2 s phi(m/s)``,
  the mixture has the exact form [2]
  ``1/M sum_m A(y - mu_m, sigma_m^2) - 1/(2 M^2) sum_{m,m'} A(mu_m - mu_m', sigma_m^2 +
  sigma_m'^2)``, which for M = 1 is the Gaussian closed form
  ``sigma (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi))``, ``z = (y - mu)/sigma`` [1];
* interval coverage: the fraction of targets inside the central predictive interval of
  nominal level ``a``, i.e. with PIT value ``F(y)`` in ``[(1 - a)/2, (1 + a)/2]`` (exact
  for the mixture, no quantile search), for ``a`` in ``COVERAGE_LEVELS``; the
  interval calibration error is the mean ``|coverage(a) - a|`` over those levels [3].

OOD sets report the mean predictive standard deviation.

References:
  [1] Gneiting, Raftery. Strictly Proper Scoring Rules, Prediction, and Estimation.
      JASA 2007. https://doi.org/10.1198/016214506000001437
  [2] Grimit, Gneiting, Berrocal, Johnson. The Continuous Ranked Probability Score for
      Circular Variables and its Application to Mesoscale Forecast Ensemble
      Verification. QJRMS 2006. https://doi.org/10.1256/qj.05.235
  [3] Kuleshov, Fenner, Ermon. Accurate Uncertainties for Deep Learning Using
      Calibrated Regression. ICML 2018. https://arxiv.org/abs/1807.00263
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from relbench.errors import UsageError
from relbench.metrics.streaming import Predictions, StreamingMetric

COVERAGE_LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05, 0.10, ... 0.95
REPORTED_COVERAGE = (0.5, 0.9, 0.95)


def gaussian_log_prob(y: jax.Array, mean: jax.Array, variance: jax.Array) -> jax.Array:
    """Elementwise ``log N(y; mean, variance)``."""
    return -0.5 * (jnp.log(2 * jnp.pi * variance) + jnp.square(y - mean) / variance)


def pinball_loss(y: jax.Array, quantile: jax.Array, level: float) -> jax.Array:
    """Elementwise pinball loss ``rho_tau(y - q) = max(tau (y - q), (tau - 1)(y - q))`` of
    a predicted ``quantile`` at ``level`` tau: minimized in expectation by the true tau
    quantile (Koenker and Bassett 1978); the negative log density of an asymmetric
    Laplace of unit scale, up to a constant."""
    residual = y - quantile
    return jnp.maximum(level * residual, (level - 1.0) * residual)


def mixture_moments(means: jax.Array, variances: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``[M, B, O]`` member means and variances -> ``[B, O]`` mixture mean and variance."""
    mean = jnp.mean(means, axis=0)
    variance = jnp.mean(variances + jnp.square(means - mean[None]), axis=0)
    return mean, variance


def mixture_log_prob(y: jax.Array, means: jax.Array, variances: jax.Array) -> jax.Array:
    """``[B]`` log density of targets ``[B, O]`` under the equal-weight member mixture."""
    member = jnp.sum(gaussian_log_prob(y[None], means, variances), axis=-1)  # [M, B]
    return jax.nn.logsumexp(member, axis=0) - jnp.log(means.shape[0])


def mixture_cdf(y: jax.Array, means: jax.Array, variances: jax.Array) -> jax.Array:
    """``[B, O]`` predictive CDF ``F(y)`` (the PIT value) of each target and output."""
    return jnp.mean(ndtr((y[None] - means) / jnp.sqrt(variances)), axis=0)


def _expected_abs(m: jax.Array, variance: jax.Array) -> jax.Array:
    """``E|Z|`` for ``Z ~ N(m, variance)``."""
    s = jnp.sqrt(variance)
    z = m / s
    return m * (2 * ndtr(z) - 1) + 2 * s * jnp.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def gaussian_crps(y: jax.Array, mean: jax.Array, variance: jax.Array) -> jax.Array:
    """Elementwise CRPS of ``N(mean, variance)`` at ``y`` (closed form [1])."""
    return _expected_abs(y - mean, variance) - jnp.sqrt(variance / jnp.pi)


def mixture_crps(y: jax.Array, means: jax.Array, variances: jax.Array) -> jax.Array:
    """``[B, O]`` exact CRPS of the equal-weight member mixture [2]."""
    if means.shape[0] == 1:
        return gaussian_crps(y, means[0], variances[0])
    to_target = jnp.mean(_expected_abs(y[None] - means, variances), axis=0)
    # [M, 1, B, O] - [1, M, B, O] -> [M, M, B, O]: every pair of members.
    spread = _expected_abs(means[:, None] - means[None], variances[:, None] + variances[None])
    return to_target - 0.5 * jnp.mean(spread, axis=(0, 1))


def regression_outputs(p: Predictions) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Member means ``[M, B, O]``, member variances ``[M, B, O]`` and targets ``[B, O]``."""
    if "variance" not in p.extras:
        raise UsageError(
            "regression metrics need the model's extras['variance']; give the model a "
            "variance head (relbench.layers.gaussian.GaussianHead, method likelihood='gaussian')"
        )
    means = p.logits
    return means, p.extras["variance"], p.labels.reshape(means.shape[1:]).astype(means.dtype)


def _scores_statistics(p: Predictions):
    means, variances, y = regression_outputs(p)
    mean, _ = mixture_moments(means, variances)
    mask = p.mask
    return {
        "count": jnp.sum(mask),
        "entries": jnp.sum(mask) * y.shape[-1],
        "nll": -jnp.sum(mask * mixture_log_prob(y, means, variances)),
        "squared_error": jnp.sum(mask[:, None] * jnp.square(y - mean)),
        "crps": jnp.sum(mask[:, None] * mixture_crps(y, means, variances)),
    }


def _scores_result(s):
    return {
        "nll": float(s["nll"] / s["count"]),
        "rmse": float(np.sqrt(s["squared_error"] / s["entries"])),
        "crps": float(s["crps"] / s["entries"]),
    }


def _coverage_statistics(p: Predictions):
    means, variances, y = regression_outputs(p)
    distance = jnp.abs(mixture_cdf(y, means, variances) - 0.5)  # [B, O]
    levels = jnp.asarray(COVERAGE_LEVELS, distance.dtype)
    inside = distance[..., None] <= levels / 2  # [B, O, L]
    return {
        "entries": jnp.sum(p.mask) * y.shape[-1],
        "covered": jnp.sum(p.mask[:, None, None] * inside, axis=(0, 1)),  # [L]
    }


def _coverage_result(s):
    coverage = s["covered"] / s["entries"]
    levels = np.asarray(COVERAGE_LEVELS)
    out = {
        f"coverage_{round(100 * a)}": float(coverage[COVERAGE_LEVELS.index(a)])
        for a in REPORTED_COVERAGE
    }
    out["interval_calibration_error"] = float(np.mean(np.abs(coverage - levels)))
    return out


def _ood_statistics(p: Predictions):
    means, variances, _ = regression_outputs(p)
    _, variance = mixture_moments(means, variances)
    return {
        "entries": jnp.sum(p.mask) * variance.shape[-1],
        "std": jnp.sum(p.mask[:, None] * jnp.sqrt(variance)),
    }


def _ood_result(s):
    return {"mean_predictive_std": float(s["std"] / s["entries"])}


REGRESSION_SCORES = StreamingMetric(_scores_statistics, _scores_result)
INTERVAL_COVERAGE = StreamingMetric(_coverage_statistics, _coverage_result)
REGRESSION_OOD = StreamingMetric(_ood_statistics, _ood_result)

REGRESSION_IN_DISTRIBUTION = (REGRESSION_SCORES, INTERVAL_COVERAGE)
REGRESSION_OUT_OF_DISTRIBUTION = (REGRESSION_OOD,)

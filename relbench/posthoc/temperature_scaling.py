"""Temperature scaling [1]: one temperature ``T`` divides every logit.

The predictive distribution becomes ``1/M sum_m softmax(z_m / T)``; ``T`` minimizes its
negative log-likelihood on the fit split (the validation set),

    T* = argmin_T  -1/N sum_i log 1/M sum_m softmax(z_mi / T)_{y_i},

against the one-hot labels, or the soft labels where the set has them. ``T > 1``
softens an overconfident model, ``T < 1`` sharpens an underconfident one; the ranking
of the classes, hence accuracy, never changes. For an ensemble the one temperature is
shared by the members and fitted on the ensemble's predictive distribution.

The NLL is minimized over ``log T`` in ``[log min_temperature, log max_temperature]``:
a grid of ``grid_size`` points brackets the minimum, and golden-section search
narrows the bracket to float precision (no gradient steps, so nothing to tune). Where
the model classifies the whole fit split correctly, the NLL falls monotonically as
``T -> 0`` and has no interior minimum: the fit stops at ``min_temperature`` and logs a
warning (a larger validation set, or a higher ``min_temperature``, is the remedy).

References:
  [1] Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
      https://arxiv.org/abs/1706.04599
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from absl import logging

from relbench.errors import UsageError
from relbench.metrics.predictive import predictive_log_probs
from relbench.posthoc.step import Outputs, PosthocStep, Targets

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_GOLDEN_ITERATIONS = 64


def nll(log_temperature: jax.Array, logits: jax.Array, targets: jax.Array) -> jax.Array:
    """The predictive NLL of ``[M, N, K]`` logits at ``T = exp(log_temperature)``
    against ``[N, K]`` target distributions."""
    log_probs = predictive_log_probs(logits / jnp.exp(log_temperature))  # [N, K]
    return -jnp.mean(jnp.sum(targets * log_probs, axis=-1))


def target_distributions(targets: Targets, num_classes: int) -> jax.Array:
    """``[N, K]``: the soft labels where given, else the one-hot labels."""
    if "soft_label" in targets:
        return targets["soft_label"].astype(jnp.float32)
    return jax.nn.one_hot(targets["label"], num_classes)


def minimize(objective, low: float, high: float, grid_size: int) -> jax.Array:
    """The minimizer of a scalar function on ``[low, high]``: the best of ``grid_size``
    points, refined by golden-section search between its neighbours."""
    grid = jnp.linspace(low, high, grid_size)
    best = jnp.argmin(jax.lax.map(objective, grid))
    a, b = grid[jnp.maximum(best - 1, 0)], grid[jnp.minimum(best + 1, grid_size - 1)]

    def narrow(_, bracket):
        a, b = bracket
        c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        left = objective(c) < objective(d)
        return jnp.where(left, a, c), jnp.where(left, d, b)

    a, b = jax.lax.fori_loop(0, _GOLDEN_ITERATIONS, narrow, (a, b))
    return (a + b) / 2


def warn_at_bound(temperature, low: float, high: float) -> None:
    """Logs where the fitted temperature is at an end of the search range."""
    for bound in (low, high):
        if abs(float(temperature) - bound) <= 1e-3 * bound:
            logging.warning(
                "temperature_scaling stopped at the end of its range, T = %g: the NLL has "
                "no minimum inside [%g, %g] (a fit split classified without error); use "
                "a larger fit split or move the bound",
                float(temperature),
                low,
                high,
            )


def make(
    split: str = "validation",
    min_temperature: float = 0.05,
    max_temperature: float = 20.0,
    grid_size: int = 64,
) -> PosthocStep:
    """Args:
    split: the evaluation set the temperature is fitted on.
    min_temperature, max_temperature: the search range of ``T``.
    grid_size: points of the bracketing grid over ``log T``.
    """
    if not 0 < min_temperature < max_temperature:
        raise UsageError(
            "temperature_scaling needs 0 < min_temperature < max_temperature, got "
            f"{min_temperature} and {max_temperature}"
        )
    if grid_size < 3:
        raise UsageError(f"temperature_scaling needs grid_size >= 3, got {grid_size}")

    def fit(outputs: Outputs, targets: Targets) -> dict[str, jax.Array]:
        logits, _ = outputs
        distributions = target_distributions(targets, logits.shape[-1])
        low, high = math.log(min_temperature), math.log(max_temperature)
        log_t = minimize(lambda u: nll(u, logits, distributions), low, high, grid_size)
        jax.debug.callback(warn_at_bound, jnp.exp(log_t), min_temperature, max_temperature)
        return {"temperature": jnp.exp(log_t)}

    def apply(outputs: Outputs, params) -> Outputs:
        logits, extras = outputs
        return logits / params["temperature"], extras

    return PosthocStep(fit=fit, apply=apply, split=split)

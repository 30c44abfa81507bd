"""Precise BatchNorm statistics [1]: population statistics recomputed after training.

A batch norm layer evaluates with running averages of its training-batch statistics,
updated with momentum ``m`` at every step. They average the statistics of many past
weights rather than the final ones, so they lag behind: after a short training, or
where the activations change scale quickly (spectral normalization shrinks them by an
order of magnitude while the averages still carry their initialization), evaluation
normalizes with the wrong statistics and can fall to chance accuracy. Precise BN [1]
replaces them by the statistics of the final network over N training batches,

    mu = 1/N sum_n mu_n,      sigma^2 = 1/N sum_n (sigma_n^2 + mu_n^2) - mu^2,

the mean and (biased) variance of the union of the N equally sized batches, with
``mu_n`` and ``sigma_n^2`` batch ``n``'s statistics computed as in training (every batch
norm normalizes with its batch's statistics, those before it with theirs).

The batch statistics come from the method's own training forward pass (its ``loss_fn``
with every collection mutable, so that MIMO's stacked inputs and ensembles' members are
as in training) and are read off Flax's moving-average update
``r' = m r + (1 - m) s``: evaluated at ``r = 0`` it is ``(1 - m) s``, and its
forward-mode derivative in ``r`` is ``m`` (free: the forward pass itself does not
depend on ``r``), so ``s = r' / (1 - m)`` for whatever momentum each layer has. Each
batch is a global batch, so the statistics are the same under any number of devices
(up to float summation order). The variance of a ``"var"`` leaf pairs with the
``"mean"`` leaf beside it; any other leaf of ``"batch_stats"`` is averaged.

References:
  [1] Wu, Johnson. Rethinking "Batch" in BatchNorm. 2021.
      https://arxiv.org/abs/2105.07576
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from relbench.methods.method import AfterTraining, ApplyFn, LossFn, SplitData, rng_dict

BATCH_STATS = "batch_stats"


def batch_statistics(
    loss_fn: LossFn,
    apply_fn: ApplyFn,
    variables: Mapping[str, Any],
    batch: Mapping[str, jax.Array],
    rngs: Mapping[str, jax.Array],
    *,
    step: jax.Array,
    num_train_examples: int,
) -> Any:
    """Every batch norm's statistics on one training batch (``variables``' structure)."""
    running = variables[BATCH_STATS]

    def updated(old):
        _, (updates, _) = loss_fn(
            apply_fn,
            {**variables, BATCH_STATS: old},
            batch,
            rngs,
            step=step,
            num_train_examples=num_train_examples,
        )
        return updates[BATCH_STATS]

    zeros = jax.tree.map(jnp.zeros_like, running)
    ones = jax.tree.map(jnp.ones_like, running)
    scaled, momentum = jax.jvp(updated, (zeros,), (ones,))  # (1 - m) s, m
    return jax.tree.map(lambda r, m: r / (1.0 - m), scaled, momentum)


def zero_sums(running: Any) -> Any:
    """The sums before the first batch, for statistics shaped like ``running``."""
    zeros = jax.tree.map(jnp.zeros_like, running)
    return {"sum": zeros, "sum_of_squares": zeros}


def accumulate(sums: Any, statistics: Any) -> Any:
    """Adds one batch's statistics ``s`` and their squares to the running sums."""
    add = {"sum": statistics, "sum_of_squares": jax.tree.map(jnp.square, statistics)}
    return jax.tree.map(jnp.add, sums, add)


def population_statistics(sums: Any, num_batches: int) -> Any:
    """The statistics of the union of the batches (module docstring) from their sums."""

    def combine(mean_sums, square_sums):
        if isinstance(mean_sums, Mapping):
            out = {k: combine(v, square_sums[k]) for k, v in mean_sums.items()}
            if "mean" in mean_sums and "var" in mean_sums:  # a batch norm's pair
                mean = mean_sums["mean"] / num_batches
                second = (mean_sums["var"] + square_sums["mean"]) / num_batches
                out["var"] = jnp.maximum(second - jnp.square(mean), 0.0)
            return out
        return mean_sums / num_batches

    return combine(sums["sum"], sums["sum_of_squares"])


def precise_batch_norm(
    loss_fn: LossFn, rng_streams: tuple[str, ...], num_train_examples: int
) -> AfterTraining:
    """The after-training step that replaces the running averages of every batch norm by
    their population statistics over the ``data("train")`` batches; a state without
    ``"batch_stats"`` is returned unchanged."""

    def batch_sums(apply_fn, sums, state, batch, key):
        statistics = batch_statistics(
            loss_fn,
            apply_fn,
            state.variables,
            batch,
            rng_dict(key, rng_streams),
            step=state.step,
            num_train_examples=num_train_examples,
        )
        return accumulate(sums, statistics)

    def after_training(apply_fn, state, data: SplitData, key):
        if not jax.tree.leaves(state.collections.get(BATCH_STATS, {})):
            return state
        step = jax.jit(functools.partial(batch_sums, apply_fn))
        sums, count = zero_sums(state.collections[BATCH_STATS]), 0
        for count, batch in enumerate(data("train"), start=1):
            sums = step(sums, state, batch, jax.random.fold_in(key, count))
        statistics = population_statistics(sums, count)
        return state.replace(collections={**state.collections, BATCH_STATS: statistics})

    return after_training

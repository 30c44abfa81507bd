"""Members that are weight samples: the after-training step and prediction that every
method whose members are draws of the weights shares (SWAG, MultiSWAG, snapshot
ensembles, SG-MCMC).

A method gives ``draw(state, index) -> params``, the ``index``-th of its ``S`` weight
samples, computed from the train state (SWAG regenerates it from the moments and a
stored key; a trajectory method reads its stored snapshot). After training, every
batch norm gets its population statistics under each sample
(``relbench.methods.precise_bn``, over ``data("train")``): a batch norm's statistics
under other weights are not those of any iterate [1, Sec. 4]. At test time the ``S``
samples run one at a time and are stacked on the member axis: ``[S*M, B, K]``.

References:
  [1] Maddox, Garipov, Izmailov, Vetrov, Wilson. A Simple Baseline for Bayesian
      Uncertainty in Deep Learning. NeurIPS 2019. https://arxiv.org/abs/1902.02476
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from relbench.methods.method import LossFn, rng_dict
from relbench.methods.precise_bn import (
    BATCH_STATS,
    accumulate,
    batch_statistics,
    population_statistics,
    zero_sums,
)

Draw = Callable[[Any, jax.Array], Any]  # (state, index) -> params


def zero_sample_statistics(variables: Any, num_samples: int) -> Any:
    """Zero batch-norm statistics ``[S, ...]`` for each of the ``S`` samples: the
    ``state.fitted[BATCH_STATS]`` slot that ``sample_statistics`` fills."""
    batch_stats = variables.get(BATCH_STATS, {})
    return jax.tree.map(lambda s: jnp.zeros((num_samples, *s.shape)), batch_stats)


def sample_statistics(
    loss_fn: LossFn, streams: Sequence[str], draw: Draw, num_samples: int
) -> Callable[..., Any]:
    """``(apply_fn, state, data, key) -> [S, ...]`` batch-norm statistics per sample
    (``{}`` for models without batch norm), shaped like ``state.fitted[BATCH_STATS]``."""

    def fit(apply_fn, state, data, key):
        if not jax.tree.leaves(state.collections.get(BATCH_STATS, {})):
            return {}

        def statistics(params, batch, batch_key):
            variables = {**state.variables, "params": params}
            return batch_statistics(
                loss_fn,
                apply_fn,
                variables,
                batch,
                rng_dict(batch_key, streams),
                step=state.step,
                num_train_examples=0,  # the likelihood's loss reads neither
            )

        @jax.jit
        def add_batch(sums, batch, batch_key):
            at_samples = jax.lax.map(
                lambda i: statistics(draw(state, i), batch, batch_key), jnp.arange(num_samples)
            )  # [S, ...] per leaf, one sample at a time
            return accumulate(sums, at_samples)

        sums, count = zero_sums(state.fitted[BATCH_STATS]), 0
        for count, batch in enumerate(data("train"), start=1):
            sums = add_batch(sums, batch, jax.random.fold_in(key, count))
        return population_statistics(sums, count)

    return fit


def sample_predict(draw: Draw, num_samples: int):
    """``predict_fn``: the ``S`` samples, each with its own batch-norm statistics
    (``state.fitted[BATCH_STATS]``, ``[S, ...]``), stacked on the member axis."""

    def predict_fn(apply_fn, state, inputs, key):
        del key  # the samples are fixed by the state

        def one_sample(sample_inputs):
            index, batch_stats = sample_inputs
            variables = {**state.variables, "params": draw(state, index)}
            if batch_stats:
                variables[BATCH_STATS] = batch_stats
            return apply_fn(variables, inputs, train=False)

        # One sample at a time: [S, M, B, ...], then every sample of every member is a member.
        logits, extras = jax.lax.map(
            one_sample, (jnp.arange(num_samples), state.fitted[BATCH_STATS])
        )
        merge = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
        return merge(logits), jax.tree.map(merge, extras)

    return predict_fn

"""SWAG [1]: a Gaussian over the weights fitted to the trajectory of SGD.

Training is the usual maximum likelihood; the method wraps the optimizer
(``track_moments``) so that, over the last ``1 - start_fraction`` of training,
``num_collected`` evenly spaced iterates ``theta_1..theta_n`` (the last one at the final
step) update running moments in the wrapper's state:

    theta_bar = 1/n sum_i theta_i,     theta2_bar = 1/n sum_i theta_i^2,
    D = [theta_i - theta_bar_i]  for the last K iterates (theta_bar_i: the mean after i),

the SWA mean, the second moment and the deviation matrix of rank K. The posterior is
``N(theta_bar, (Sigma_diag + D D^T / (K - 1)) / 2)`` with
``Sigma_diag = diag(theta2_bar - theta_bar^2)``, and a sample is

    theta = theta_bar + sqrt(scale) * (Sigma_diag^{1/2} z_1 + D z_2 / sqrt(K - 1)) / sqrt(2)

(``z_1 ~ N(0, I_d)``, ``z_2 ~ N(0, I_K)``; with ``rank = 0`` only the diagonal term,
without the 1/sqrt(2)), as in the authors' code; ``scale = 0.5`` is their choice.

After training (``after_training``) the parameters become the SWA mean, and every
batch norm gets its population statistics under each of the ``num_samples`` samples
(``relbench.methods.precise_bn``, over ``data("train")``); the loop's precise
batch-norm step, which runs next, refits them under the SWA mean itself (so keep
``config.train.precise_batch_norm`` on for SWAG on batch-norm models): a batch
norm's statistics under averaged or sampled weights are not those of any iterate
[1, Sec. 4]. The samples' keys and statistics are the state's ``fitted`` part,
so at test time the ``S`` samples are regenerated from the moments (one at a time) and
stacked on the member axis: ``[S, B, K]``. With ``rank = 0``, one sample and
``scale = 0`` the one member is the SWA solution [2].

References:
  [1] Maddox, Garipov, Izmailov, Vetrov, Wilson. A Simple Baseline for Bayesian
      Uncertainty in Deep Learning. NeurIPS 2019. https://arxiv.org/abs/1902.02476
  [2] Izmailov, Podoprikhin, Garipov, Vetrov, Wilson. Averaging Weights Leads to Wider
      Optima and Better Generalization. UAI 2018. https://arxiv.org/abs/1803.05407
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from relbench.errors import UsageError
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.method import Method, dense_head, likelihood_loss, single_pass_predict
from relbench.methods.precise_bn import BATCH_STATS
from relbench.methods.weight_samples import (
    sample_predict,
    sample_statistics,
    zero_sample_statistics,
)


class MomentsState(NamedTuple):
    """The wrapped optimizer's state and the moments of the collected iterates."""

    inner: Any
    count: jax.Array  # steps taken
    collected: jax.Array  # iterates collected, n
    mean: Any  # theta_bar
    second_moment: Any  # theta2_bar
    deviations: Any  # [K, ...] per leaf: theta_i - theta_bar_i of the last K; None if K = 0


def collection_schedule(total_steps: int, start_fraction: float, num_collected: int):
    """``(first, every)``: iterates are collected after steps ``first, first + every, ...,
    total_steps`` (1-based counts), ``num_collected`` of them where the phase allows."""
    phase = max(total_steps - math.floor(start_fraction * total_steps), 1)
    every = max(phase // num_collected, 1)
    count = min(num_collected, phase // every)
    return total_steps - (count - 1) * every, every


def track_moments(
    tx: optax.GradientTransformation, total_steps: int, start_fraction, num_collected, rank
) -> optax.GradientTransformation:
    """``tx`` that also keeps the SWAG moments of its iterates (module docstring)."""
    first, every = collection_schedule(total_steps, start_fraction, num_collected)

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        # Rank 0 keeps no deviations (None: no arrays, so nothing of zero size to save).
        deviations = (
            jax.tree.map(lambda p: jnp.zeros((rank, *p.shape), p.dtype), params) if rank else None
        )
        return MomentsState(
            tx.init(params), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), zeros, zeros,
            deviations,
        )  # fmt: skip

    def update(updates, state, params=None):
        updates, inner = tx.update(updates, state.inner, params)
        iterate = optax.apply_updates(params, updates)  # theta after this step
        count = state.count + 1
        collect = (count >= first) & ((total_steps - count) % every == 0)
        n = state.collected + collect.astype(jnp.int32)
        weight = jnp.where(collect, 1.0 / jnp.maximum(n, 1), 0.0)  # running means
        mean = jax.tree.map(lambda m, t: m + weight * (t - m), state.mean, iterate)
        second = jax.tree.map(
            lambda s, t: s + weight * (jnp.square(t) - s), state.second_moment, iterate
        )
        deviations = state.deviations
        if rank:
            slot = (n - 1) % rank

            def record(d, t, m):
                return d.at[slot].set(jnp.where(collect, t - m, d[slot]))

            deviations = jax.tree.map(record, state.deviations, iterate, mean)
        return updates, MomentsState(inner, count, n, mean, second, deviations)

    return optax.GradientTransformation(init, update)


def sample(moments: MomentsState, key: jax.Array, scale: float) -> Any:
    """One draw of the weights from the SWAG posterior (module docstring)."""
    leaves, treedef = jax.tree.flatten(moments.mean)
    seconds = jax.tree.leaves(moments.second_moment)
    if moments.deviations is None:
        rank, deviation_leaves = 0, [None] * len(leaves)
    else:
        deviation_leaves = jax.tree.leaves(moments.deviations)
        rank = deviation_leaves[0].shape[0]
    diagonal_key, low_rank_key = jax.random.split(key)
    columns = jnp.minimum(moments.collected, rank)  # deviations filled so far
    z2 = jax.random.normal(low_rank_key, (rank,))
    out = []
    for index, (mean, second, deviations) in enumerate(
        zip(leaves, seconds, deviation_leaves, strict=True)
    ):
        z1 = jax.random.normal(jax.random.fold_in(diagonal_key, index), mean.shape, mean.dtype)
        draw = jnp.sqrt(jnp.maximum(second - jnp.square(mean), 0.0)) * z1
        if deviations is not None:
            # [K] . [K, ...] -> [...]
            low_rank = jnp.tensordot(z2, deviations, axes=1)
            draw = (draw + low_rank / jnp.sqrt(jnp.maximum(columns - 1, 1))) / math.sqrt(2.0)
        out.append(mean + math.sqrt(scale) * draw)
    return jax.tree.unflatten(treedef, out)


def make(
    likelihood: Likelihood = CATEGORICAL,
    start_fraction: float = 0.75,
    num_collected: int = 20,
    rank: int = 20,
    num_samples: int = 30,
    scale: float = 0.5,
    label_smoothing: float = 0.0,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    start_fraction: iterates are collected over the training after this fraction.
    num_collected: n, the iterates collected (evenly spaced, the last at the end).
    rank: K, the deviations kept for the low-rank covariance (0: diagonal only).
    num_samples: S, weight samples at test time.
    scale: the covariance's scale at sampling time (0: every sample is the mean).
    label_smoothing: mass moved from the label to the uniform distribution.
    """
    likelihood = likelihood.smoothed(label_smoothing)

    def layers(base):
        return dataclasses.replace(base, head=dense_head(likelihood, base.dense))

    base = Method(
        layers=layers,
        loss_fn=likelihood_loss(likelihood, ("batch_stats",)),
        predict_fn=single_pass_predict,
    )
    return swag_of(base, start_fraction, num_collected, rank, num_samples, sample, scale)


def swag_of(
    base: Method,
    start_fraction: float,
    num_collected: int,
    rank: int,
    num_samples: int,
    sampler: Callable[[MomentsState, jax.Array, float], Any],
    scale: float,
) -> Method:
    """``base`` (its layers and loss) with the SWAG optimizer wrapper, after-training
    step and prediction: the composition MultiSWAG reuses over a deep ensemble."""
    if not 0.0 <= start_fraction < 1.0:
        raise UsageError(f"swag needs 0 <= start_fraction < 1, got {start_fraction}")
    if num_collected < 1 or num_samples < 1 or not 0 <= rank <= num_collected:
        raise UsageError(
            "swag needs num_collected >= 1, num_samples >= 1 and 0 <= rank <= num_collected; "
            f"got num_collected={num_collected}, num_samples={num_samples}, rank={rank}"
        )
    if scale < 0:
        raise UsageError(f"swag needs scale >= 0, got {scale}")
    loss_fn = base.loss_fn
    streams = base.rng_streams

    def optimizer(tx, total_steps):
        return track_moments(tx, total_steps, start_fraction, num_collected, rank)

    def draw(state, index):
        return sampler(
            state.opt_state, jax.random.wrap_key_data(state.fitted["sample_keys"][index]), scale
        )

    statistics = sample_statistics(loss_fn, streams, draw, num_samples)

    def init_fitted(variables):
        return {
            "sample_keys": jnp.zeros((num_samples, 2), jnp.uint32),
            BATCH_STATS: zero_sample_statistics(variables, num_samples),
        }

    def after_training(apply_fn, state, data, key):
        # The schedule collects at least the final iterate; the parameters become the mean.
        sample_keys = jax.random.key_data(jax.random.split(key, num_samples))
        state = state.replace(
            params=state.opt_state.mean, fitted={**state.fitted, "sample_keys": sample_keys}
        )
        fitted = {"sample_keys": sample_keys, BATCH_STATS: statistics(apply_fn, state, data, key)}
        return state.replace(fitted=fitted)

    return dataclasses.replace(
        base,
        predict_fn=sample_predict(draw, num_samples),
        optimizer=optimizer,
        after_training=after_training,
        init_fitted=init_fitted,
    )

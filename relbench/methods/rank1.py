"""Rank-1 Bayesian neural networks [1]: BatchEnsemble with a posterior on the fast weights.

The model's dense, conv and head layers become rank-1 BNN layers
(``layers.rank1``) with M mixture components (members), batch norms become per-member
ones, and the input is tiled over members. The loss is the negative ELBO per example,

    1/M sum_m NLL_m + kl_weight * sum_m KL(q_m || p) / (M N),

with ``N`` the number of training examples and the KL in closed form. At test time
each member is sampled ``num_samples`` times; the ``M * S`` samples are the members
of the predictive ``[M*S, B, K]``. Because every row draws its own factors, the S
samples cost one forward pass on the batch repeated S times (no loop, no ``vmap``).

References:
  [1] Dusenberry, Jerfel, Wen, Ma, Snoek, Heller, Lakshminarayanan, Tran. Efficient and
      Scalable Bayesian Neural Nets with Rank-1 Factors. ICML 2020.
      https://arxiv.org/abs/2005.07186
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.layers import rank1
from relbench.layers.batchensemble import fast_weight_initializer
from relbench.layers.members import tile_members
from relbench.methods.batchensemble import check_ensemble_size
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.members import kernels, member_layers
from relbench.methods.method import Method, rng_dict
from relbench.methods.variational import elbo_loss


def samples_predict(num_samples: int):
    """``S`` draws per member in one pass: the batch repeated S times, one draw per row."""

    def predict_fn(apply_fn, state, inputs, key):
        repeated = tile_members(inputs, num_samples)  # [B, ...] -> [S*B, ...]
        rngs = rng_dict(key, (rank1.RNG_STREAM,))
        logits, extras = apply_fn(state.variables, repeated, train=False, rngs=rngs)
        # [M, S*B, ...] -> [M*S, B, ...]: every draw of every member is a member.
        unfold = lambda a: a.reshape((-1, inputs.shape[0]) + a.shape[2:])  # noqa: E731
        return unfold(logits), jax.tree.map(unfold, extras)

    return predict_fn


def make(
    likelihood: Likelihood = CATEGORICAL,
    ensemble_size: int = 4,
    posterior: str = "gaussian",
    prior_scale: float = 1.0,
    posterior_scale_init: float = 0.01,
    fast_weight_init: str = "random_sign",
    fast_weight_init_stddev: float = 0.5,
    kl_weight: float = 1.0,
    num_samples: int = 4,
    label_smoothing: float = 0.0,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    ensemble_size: M, the mixture components.
    posterior: ``"gaussian"`` or ``"cauchy"``, the family of posterior and prior.
    prior_scale: the scale of the prior ``Q(1, prior_scale)`` of every factor entry.
    posterior_scale_init: the initial posterior scale of every factor entry.
    fast_weight_init: init of the posterior locations, ``"random_sign"`` or ``"gaussian"``.
    fast_weight_init_stddev: the stddev of the ``"gaussian"`` location init.
    kl_weight: multiplies the KL term (1 is the ELBO).
    num_samples: S, samples per member at test time.
    label_smoothing: mass moved from the label to the uniform distribution.
    """
    check_ensemble_size(ensemble_size)
    rank1.check_posterior(posterior)
    if prior_scale <= 0 or posterior_scale_init <= 0:
        raise UsageError("rank1 needs prior_scale > 0 and posterior_scale_init > 0")
    if num_samples < 1:
        raise UsageError(f"rank1 needs num_samples >= 1, got {num_samples}")
    likelihood = likelihood.smoothed(label_smoothing)
    fields = dict(
        ensemble_size=ensemble_size,
        posterior=posterior,
        prior_scale=prior_scale,
        posterior_scale_init=posterior_scale_init,
        fast_weight_init=fast_weight_initializer(fast_weight_init, fast_weight_init_stddev),
    )

    def layers(base):
        dense = functools.partial(rank1.Rank1Dense, **fields)
        conv = functools.partial(rank1.Rank1Conv, **fields)
        return member_layers(base, likelihood, ensemble_size, dense, conv)

    def kl_scale(step):
        del step  # the same weight at every step: kl_weight * KL / (M N), KL over members
        return jnp.asarray(kl_weight / ensemble_size)

    return Method(
        layers=layers,
        loss_fn=elbo_loss(likelihood, ("batch_stats",), rank1.KL_COLLECTION, kl_scale),
        predict_fn=samples_predict(num_samples),
        rng_streams=("dropout", rank1.RNG_STREAM),
        decay_mask=kernels,
    )

"""Rank-1 Bayesian neural network layers [1]: BatchEnsemble with random fast weights.

A rank-1 BNN layer is a BatchEnsemble layer (``layers.batchensemble``) whose fast
weights are random variables: member ``m``'s weight is ``W o (r s^T)`` with

    r ~ q_m(r) = prod_d Q(r_d; mu^r_md, sigma^r_md),
    s ~ q_m(s) = prod_n Q(s_n; mu^s_mn, sigma^s_mn),

``Q`` a Gaussian ``N(mu, sigma^2)`` or a Cauchy ``Cauchy(mu, sigma)`` (heavier tails),
so the posterior over the pair is a mixture of M such components, one per member. The
shared ``W`` and the biases are point estimates. Each row of the member-major batch
draws its own ``r`` and ``s`` (reparameterized: ``mu + sigma * eps`` with standard
Gaussian or Cauchy ``eps``), which costs a ``[M * B, D]`` draw and lowers the gradient
variance over one draw per batch. Scales are ``softplus`` of unconstrained
parameters; with ``sigma = 0`` the layer is exactly BatchEnsemble.

The prior on every factor entry is ``Q(1, prior_scale)``, centred on the identity
perturbation. Training minimizes the negative ELBO per example,

    1/M sum_m [ NLL_m + KL(q_m || p) / N ],

``N`` the number of training examples; each layer sows ``sum_m KL(q_m || p)`` into
the ``"kl_divergence"`` collection, summed in closed form [2, 3] (the registered KLs of
``relbench.ppl.divergences``):

    KL(N(mu, s^2) || N(mu0, s0^2)) = log(s0 / s) + (s^2 + (mu - mu0)^2) / (2 s0^2) - 1/2,
    KL(Cauchy(mu, s) || Cauchy(mu0, s0)) = log(((s + s0)^2 + (mu - mu0)^2) / (4 s s0)).

At test time each member is sampled several times (``methods.rank1``).

References:
  [1] Dusenberry, Jerfel, Wen, Ma, Snoek, Heller, Lakshminarayanan, Tran. Efficient and
      Scalable Bayesian Neural Nets with Rank-1 Factors. ICML 2020.
      https://arxiv.org/abs/2005.07186
  [2] Kullback, Leibler. On Information and Sufficiency. Ann. Math. Statist. 1951.
      https://doi.org/10.1214/aoms/1177729694
  [3] Chyzak, Nielsen. A closed-form formula for the Kullback-Leibler divergence between
      Cauchy distributions. 2019. https://arxiv.org/abs/1905.10965
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench import ppl
from relbench.errors import UsageError
from relbench.layers.batchensemble import BatchEnsembleConv, BatchEnsembleDense
from relbench.ppl import divergences
from relbench.ppl.divergences import softplus_inverse

KL_COLLECTION = "kl_divergence"
RNG_STREAM = "rank1"


#: The posterior family of each factor entry (a ppl distribution) and its noise sampler.
POSTERIORS: dict[str, tuple[Any, Callable[..., jax.Array]]] = {
    "gaussian": (ppl.Normal, jax.random.normal),
    "cauchy": (ppl.Cauchy, jax.random.cauchy),
}


def factor_distribution(posterior: str, loc: Any, scale: Any) -> Any:
    """``Q(loc, scale)``, the posterior (or prior) family of a factor entry."""
    family, _ = POSTERIORS[posterior]
    return family.distribution(loc, scale)


def _elementwise_kl(posterior: str, loc, scale, prior_loc, prior_scale) -> jax.Array:
    q = factor_distribution(posterior, loc, scale)
    return q.kl_divergence(factor_distribution(posterior, prior_loc, prior_scale))


def gaussian_kl(mean, scale, prior_mean, prior_scale) -> jax.Array:
    """Elementwise ``KL(N(mean, scale^2) || N(prior_mean, prior_scale^2))`` (distrax's)."""
    return _elementwise_kl("gaussian", mean, scale, prior_mean, prior_scale)


def cauchy_kl(loc, scale, prior_loc, prior_scale) -> jax.Array:
    """Elementwise ``KL(Cauchy(loc, scale) || Cauchy(prior_loc, prior_scale))`` (TFP's)."""
    return _elementwise_kl("cauchy", loc, scale, prior_loc, prior_scale)


def check_posterior(posterior: str) -> None:
    if posterior not in POSTERIORS:
        raise UsageError(f"unknown rank-1 posterior '{posterior}'; choose gaussian or cauchy")


def sample_factors(
    key: jax.Array, loc: jax.Array, scale: jax.Array, rows: int, posterior: str
) -> jax.Array:
    """One draw per row: ``[M, D]`` locations and scales -> ``[M, rows, D]`` factors."""
    _, sampler = POSTERIORS[posterior]
    noise = sampler(key, (loc.shape[0], rows, loc.shape[1]), loc.dtype)  # [M, rows, D]
    return loc[:, None] + scale[:, None] * noise


def factor_kl(loc: jax.Array, scale: jax.Array, prior_scale: float, posterior: str) -> jax.Array:
    """``sum_m KL(q_m || p)`` over all entries, prior ``Q(1, prior_scale)``."""
    prior = factor_distribution(posterior, 1.0, prior_scale)
    return divergences.kl_divergence(factor_distribution(posterior, loc, scale), prior)


class Rank1Factors:
    """Overrides ``BatchEnsembleLayer.factors``: sampled ``[M, B, C]`` fast weights, and
    the KL of their posterior to the prior sown into ``"kl_divergence"`` in training.

    Parameters: ``alpha_loc``, ``alpha_scale`` (pre-softplus), ``gamma_loc``,
    ``gamma_scale``, ``bias``; draws from the ``"rank1"`` RNG stream.
    """

    def factors(self, inputs):
        check_posterior(self.posterior)
        members, rows = self.ensemble_size, inputs.shape[0] // self.ensemble_size
        sizes = {"alpha": inputs.shape[-1], "gamma": self.features}
        scale_init = nn.initializers.constant(softplus_inverse(self.posterior_scale_init))
        loc = [
            self.param(f"{n}_loc", self.fast_weight_init, (members, d)) for n, d in sizes.items()
        ]
        raw = [self.param(f"{n}_scale", scale_init, (members, d)) for n, d in sizes.items()]
        loc, scale = jnp.concatenate(loc, -1), jax.nn.softplus(jnp.concatenate(raw, -1))
        # One draw for both factors: [M, D + N] -> [M, rows, D + N].
        draws = sample_factors(self.make_rng(RNG_STREAM), loc, scale, rows, self.posterior)
        if not self.is_initializing() and self.is_mutable_collection(KL_COLLECTION):
            self.sow(KL_COLLECTION, "kl", factor_kl(loc, scale, self.prior_scale, self.posterior))
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (members, self.features))
        return draws[..., : sizes["alpha"]], draws[..., sizes["alpha"] :], bias


class Rank1Dense(Rank1Factors, BatchEnsembleDense):
    """A rank-1 BNN dense layer; ``BatchEnsembleDense`` with random fast weights.

    Attributes (beyond ``BatchEnsembleDense``'s; ``fast_weight_init`` initializes the
    posterior locations):
      posterior: ``"gaussian"`` or ``"cauchy"``.
      prior_scale: stddev (Gaussian) or scale (Cauchy) of the prior ``Q(1, prior_scale)``.
      posterior_scale_init: the initial posterior scale of every factor entry.
    """

    posterior: str = "gaussian"
    prior_scale: float = 1.0
    posterior_scale_init: float = 0.01


class Rank1Conv(Rank1Factors, BatchEnsembleConv):
    """A rank-1 BNN 2-D convolution; ``BatchEnsembleConv`` with random fast weights.

    Attributes: as ``Rank1Dense``.
    """

    posterior: str = "gaussian"
    prior_scale: float = 1.0
    posterior_scale_init: float = 0.01


kl_sum = divergences.kl_sum  # the total KL sown by every rank-1 layer (0 if none)

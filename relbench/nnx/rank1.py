"""NNX rank-1 BNN dense and conv layers over ``relbench.layers.rank1``.

BatchEnsemble layers whose fast weights are random: one draw per row of the
member-major batch by that module's ``sample_factors`` (from the ``"rank1"`` stream), and
``sum_m KL(q_m || p)`` by ``factor_kl``, kept in a ``Rank1KL`` variable in training (see
``relbench.layers.rank1`` for the posterior, prior and references). Parameters:
``alpha_loc``, ``alpha_scale`` (pre-softplus), ``gamma_loc``, ``gamma_scale``, ``bias``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from relbench.layers.rank1 import (
    RNG_STREAM,
    check_posterior,
    factor_kl,
    sample_factors,
)
from relbench.layers.state_types import Rank1KL
from relbench.nnx import batchensemble
from relbench.nnx.rngs import draw_key, fork_stream
from relbench.ppl.divergences import softplus_inverse


class Rank1Factors:
    """Overrides ``BatchEnsembleLayer.factors``: sampled ``[M, B, C]`` fast weights."""

    def _rank1(self, posterior, prior_scale, posterior_scale_init, deterministic, rngs):
        check_posterior(posterior)
        self.posterior, self.prior_scale = posterior, prior_scale
        self.deterministic = deterministic
        init = softplus_inverse(posterior_scale_init)
        for name in ("alpha", "gamma"):
            loc = getattr(self, name)
            setattr(self, f"{name}_loc", loc)
            setattr(self, f"{name}_scale", nnx.Param(jnp.full(loc.shape, init, loc.dtype)))
            delattr(self, name)
        self.kl = Rank1KL(jnp.zeros(()))
        self.rngs = fork_stream(rngs, RNG_STREAM)

    def factors(self, inputs, rngs):
        members = self.ensemble_size
        rows, in_features = inputs.shape[0] // members, self.alpha_loc.shape[1]
        loc = jnp.concatenate([self.alpha_loc[...], self.gamma_loc[...]], -1)
        raw = jnp.concatenate([self.alpha_scale[...], self.gamma_scale[...]], -1)
        scale = jax.nn.softplus(raw)
        # One draw for both factors: [M, D + N] -> [M, rows, D + N].
        key = draw_key(self, rngs, RNG_STREAM)
        draws = sample_factors(key, loc, scale, rows, self.posterior)
        if not self.deterministic:
            self.kl[...] = factor_kl(loc, scale, self.prior_scale, self.posterior)
        bias = None if self.bias is None else self.bias[...]
        return draws[..., :in_features], draws[..., in_features:], bias


def _rank1_init(layer_init):
    """The BatchEnsemble constructor plus the rank-1 arguments (keyword-only)."""

    def __init__(
        self,
        *args,
        posterior: str = "gaussian",
        prior_scale: float = 1.0,
        posterior_scale_init: float = 0.01,
        deterministic: bool = False,
        rngs: nnx.Rngs,
        **kwargs,
    ):
        layer_init(self, *args, rngs=rngs, **kwargs)
        self._rank1(posterior, prior_scale, posterior_scale_init, deterministic, rngs)

    return __init__


class Rank1Dense(Rank1Factors, batchensemble.BatchEnsembleDense):
    """A rank-1 BNN dense layer: ``BatchEnsembleDense``'s arguments (``fast_weight_init``
    initializes the posterior locations) plus ``posterior`` (``"gaussian"`` or
    ``"cauchy"``), ``prior_scale``, ``posterior_scale_init`` and ``deterministic``."""

    __init__ = _rank1_init(batchensemble.BatchEnsembleDense.__init__)


class Rank1Conv(Rank1Factors, batchensemble.BatchEnsembleConv):
    """A rank-1 BNN 2-D convolution: ``BatchEnsembleConv``'s arguments plus those of
    ``Rank1Dense``."""

    __init__ = _rank1_init(batchensemble.BatchEnsembleConv.__init__)

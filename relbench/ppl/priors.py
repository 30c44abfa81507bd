"""Priors over weights: any ``relbench.ppl`` distribution, i.i.d. over a tensor.

A Bayesian layer's prior ``p(W) = prod_i p(w_i)`` is one scalar distribution of a ppl
family (Normal, Laplace, Student-t, Cauchy, horseshoe, a scale mixture of Normals
[1]), applied to every weight. A ``WeightPrior`` names the family and its scalar
parameters, and builds the distribution only when it is used (no array exists at
import, before ``jax.distributed`` starts). ``log_prob`` sums over the tensor, and
``kl`` is ``KL(N(loc, scale^2) || p)`` from ``relbench.ppl.divergences`` (analytic
where registered, else Monte Carlo at a given sample).

References:
  [1] Blundell, Cornebise, Kavukcuoglu, Wierstra. Weight Uncertainty in Neural
      Networks. ICML 2015. https://arxiv.org/abs/1505.05424
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from relbench.ppl import divergences
from relbench.ppl.random_variable import Normal, ScaleMixtureNormal

Array = jax.Array


def normal_posterior(loc: Any, scale: Any) -> Any:
    """The mean-field posterior ``q(W) = N(loc, scale^2)``, a ppl (distrax) Normal."""
    return Normal.distribution(loc, scale)


@dataclasses.dataclass(frozen=True)
class WeightPrior:
    """Any ``relbench.ppl`` distribution, with scalar parameters, as the prior of every
    weight: ``WeightPrior(ppl.Laplace, (("loc", 0.0), ("scale", 1.0)))``.

    The distribution is built when a layer runs (never at import, so no array exists
    before ``jax.distributed`` starts). Its KL against the Normal posterior is
    analytic where distrax registers the pair, else Monte Carlo
    (``relbench.ppl.divergences``).
    """

    family: Callable[..., Any]
    params: tuple[tuple[str, float], ...] = ()

    def distribution(self) -> Any:
        build = getattr(self.family, "distribution", self.family)  # a ppl constructor's
        return build(**dict(self.params))

    def log_prob(self, weights: Array) -> Array:
        """The summed log density: a regularizer ``weights -> scalar`` (negate it)."""
        return jnp.sum(self.distribution().log_prob(weights))

    def kl(self, loc: Array, scale: Array, sample: Array | None = None) -> Array:
        """``KL(N(loc, scale^2) || prior)``, summed (``sample`` for the MC estimate)."""
        return divergences.kl_divergence(normal_posterior(loc, scale), self.distribution(), sample)


def NormalPrior(loc: float = 0.0, scale: float = 1.0) -> WeightPrior:  # noqa: N802
    """``p(w) = N(w; loc, scale^2)`` for every weight; the KL has a closed form."""
    return WeightPrior(Normal, (("loc", loc), ("scale", scale)))


def ScaleMixturePrior(  # noqa: N802
    weight: float = 0.5, scale1: float = 1.0, scale2: float = math.exp(-6.0)
) -> WeightPrior:
    """``p(w) = weight N(w; 0, scale1^2) + (1 - weight) N(w; 0, scale2^2)`` [1]; no
    closed-form KL (Monte Carlo)."""
    params = (("weight", weight), ("scale1", scale1), ("scale2", scale2))
    return WeightPrior(ScaleMixtureNormal, params)

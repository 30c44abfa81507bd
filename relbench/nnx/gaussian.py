"""The NNX Gaussian regression head over ``relbench.layers.gaussian.positive_variance``.

features ``[N, D]`` -> ``(mean [N, O], {"variance": [N, O]})``, the contract of the Linen
``GaussianHead`` (see ``relbench.layers.gaussian`` for the likelihood and references):
the mean from a location head ``loc``, the variance ``softplus(s(x)) + min_variance``
(or a learned constant), plus the location head's own variance where it reports one,
and the quantiles of ``quantile_coverage`` where it is set.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from relbench.layers.gaussian import positive_variance, quantile_extras
from relbench.nnx.heads import DenseHead


class GaussianHead(nnx.Module):
    """Args: as the Linen ``GaussianHead``, with ``in_features`` and ``rngs``; ``loc`` is
    an NNX head type ``loc(in_features, num_outputs, rngs=rngs)``; ``dense`` an NNX dense
    type."""

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        *,
        heteroscedastic: bool = True,
        min_variance: float = 1e-6,
        loc: Any = None,
        dense: Any = nnx.Linear,
        quantile_coverage: float = 0.0,
        rngs: nnx.Rngs,
    ):
        loc = functools.partial(DenseHead, dense=dense) if loc is None else loc
        self.min_variance = min_variance
        self.mean = loc(in_features, num_outputs, rngs=rngs)
        if heteroscedastic:
            self.variance = dense(in_features, num_outputs, rngs=rngs)
        else:
            self.variance = nnx.Param(jnp.zeros((num_outputs,)))
        self.quantiles = (
            dense(in_features, 2 * num_outputs, rngs=rngs) if quantile_coverage else None
        )

    def __call__(self, features: jax.Array) -> tuple[jax.Array, dict]:
        mean, extras = self.mean(features)
        if isinstance(self.variance, nnx.Param):
            raw = jnp.broadcast_to(self.variance[...], mean.shape)  # [O] -> [N, O]
        else:
            raw = self.variance(features)
        variance = positive_variance(raw, self.min_variance)
        if "variance" in extras:  # the location head's own variance of the mean
            extras = {**extras, "mean_variance": extras["variance"]}
            variance = variance + extras["variance"]
        if self.quantiles is not None:
            extras = {**extras, **quantile_extras(self.quantiles(features))}
        return mean, {**extras, "variance": variance}

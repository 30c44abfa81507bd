"""The Gaussian regression head: a mean and an input-dependent variance per output.

For regression the network predicts a distribution, ``y | x ~ N(mu(x), sigma^2(x))``,
fitted by the Gaussian negative log-likelihood [1]

    -log N(y; mu, sigma^2) = 1/2 log(2 pi sigma^2) + (y - mu)^2 / (2 sigma^2),

with ``sigma^2(x) = softplus(s(x)) + min_variance`` (heteroscedastic) or a learned
constant ``softplus(s) + min_variance`` (homoscedastic). The softplus keeps the
variance positive with gradients that do not explode as the variance shrinks [2].

**Output contract.** The head returns the mean in the logits' place, ``[N, O]`` (O
outputs, the dataset's ``num_classes``), and the variance in its extras as
``{"variance": [N, O]}``; a model turns these into ``[M, B, O]`` means and an
``[M, B, O]`` variance, and the predictive distribution is the equal-weight mixture
of the M member Gaussians (``relbench.metrics.regression``).

The mean comes from a location head ``loc`` (a dense head by default). Where that head
reports its own uncertainty about the mean, a variance ``v(x)`` in its extras (the
posterior variance of a Gaussian-process head, as in SNGP), the predictive variance is
the sum ``sigma^2(x) + v(x)`` of the noise and the mean's variance, and ``v(x)`` is kept
as ``extras["mean_variance"]``.

**Quantiles.** With ``quantile_coverage`` ``c > 0`` the head also predicts the
``(1 - c)/2`` and ``(1 + c)/2`` quantiles of every output from the same features (a
dense branch ``quantiles``), in ``extras["quantile_lower"]`` and
``extras["quantile_upper"]`` ``[N, O]``; the Gaussian likelihood trains them by the
pinball loss [3] (``relbench.metrics.regression.pinball_loss``), and
``relbench.posthoc.conformal_regression.conformal_cqr`` conformalizes them [4].

References:
  [1] Nix, Weigend. Estimating the Mean and Variance of the Target Probability
      Distribution. ICNN 1994. https://doi.org/10.1109/ICNN.1994.374138
  [2] Lakshminarayanan, Pritzel, Blundell. Simple and Scalable Predictive Uncertainty
      Estimation using Deep Ensembles. NeurIPS 2017. https://arxiv.org/abs/1612.01474
  [3] Koenker, Bassett. Regression Quantiles. Econometrica 1978.
      https://doi.org/10.2307/1913643
  [4] Romano, Patterson, Candes. Conformalized Quantile Regression. NeurIPS 2019.
      https://arxiv.org/abs/1905.03222
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.layers.heads import DenseHead
from relbench.layers.mixed_precision import with_dtype

ModuleDef = Any


QUANTILE_LOWER, QUANTILE_UPPER = "quantile_lower", "quantile_upper"


def quantile_levels(coverage: float) -> tuple[float, float]:
    """The levels ``((1 - c)/2, (1 + c)/2)`` of the central interval of coverage ``c``."""
    return (1.0 - coverage) / 2, (1.0 + coverage) / 2


def quantile_extras(raw: jax.Array) -> dict[str, jax.Array]:
    """``[N, 2 O]`` outputs of the quantile branch -> the lower and upper quantiles."""
    lower, upper = jnp.split(raw.astype(jnp.float32), 2, axis=-1)  # [N, O] each
    return {QUANTILE_LOWER: lower, QUANTILE_UPPER: upper}


def positive_variance(raw: jax.Array, min_variance: float) -> jax.Array:
    """``softplus(raw) + min_variance``: an unconstrained output -> a variance."""
    return nn.softplus(raw) + min_variance


class GaussianHead(nn.Module):
    """features ``[N, D]`` -> ``(mean [N, O], {"variance": [N, O]})``.

    Attributes:
      num_outputs: O (a model passes its ``num_classes``).
      heteroscedastic: an input-dependent variance; False learns one variance per output.
      min_variance: the variance floor.
      loc: the head of the mean, ``loc(num_outputs)(features, train=...) -> (mean,
        extras)``; None: a dense head made of ``dense``.
      dense: the dense layer type of the variance (and of the default mean head).
      dtype: the compute dtype of ``loc`` and ``dense`` (``None``: their own).
      quantile_coverage: ``c`` in (0, 1): also predict the quantiles of the central
        interval of coverage ``c``; 0: no quantiles.
    """

    num_outputs: int
    heteroscedastic: bool = True
    min_variance: float = 1e-6
    loc: ModuleDef | None = None
    dense: ModuleDef = nn.Dense
    dtype: Any = None
    quantile_coverage: float = 0.0

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        dense = with_dtype(self.dense, self.dtype)
        loc = functools.partial(DenseHead, dense=dense) if self.loc is None else self.loc
        loc = with_dtype(loc, self.dtype)
        mean, extras = loc(self.num_outputs, name="mean")(features, train=train)
        if self.heteroscedastic:
            raw = dense(self.num_outputs, name="variance")(features).astype(jnp.float32)
        else:
            raw = self.param("variance", nn.initializers.zeros, (self.num_outputs,))
            raw = jnp.broadcast_to(raw, mean.shape)  # [O] -> [N, O]
        variance = positive_variance(raw, self.min_variance)
        if "variance" in extras:  # the location head's own variance of the mean
            extras = {**extras, "mean_variance": extras["variance"]}
            variance = variance + extras["variance"]
        if self.quantile_coverage:
            extras = {
                **extras,
                **quantile_extras(dense(2 * self.num_outputs, name="quantiles")(features)),
            }
        return mean, {**extras, "variance": variance}

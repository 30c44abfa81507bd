"""The NNX heteroscedastic classification head over ``relbench.layers.heteroscedastic``.

Gaussian noise ``N(0, V(x) V(x)^T + diag(d(x)^2))`` on the logits, its link averaged
over S Monte Carlo samples; the math is that module's ``logit_noise``,
``mc_link_logits`` and ``logit_variance`` (see its docstring and references). S is
``train_mc_samples`` in training and ``test_mc_samples`` with ``deterministic=True``
(``model.eval()``); the noise is drawn in both from the ``rng_stream`` stream.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from relbench.errors import UsageError
from relbench.layers.heteroscedastic import LINKS, logit_noise, logit_variance, mc_link_logits
from relbench.nnx.heads import DenseHead
from relbench.nnx.rngs import RngsArg, draw_key, fork_stream


class HeteroscedasticHead(nnx.Module):
    """features ``[N, D]`` -> ``(logits [N, K], extras)``.

    Args: those of the Linen ``HeteroscedasticHead``, with ``in_features``,
    ``deterministic`` and ``rngs``; ``loc`` and ``dense`` are NNX types
    (``loc(in_features, num_classes, rngs=rngs)``, ``dense(in, out, rngs=rngs)``).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        link: str = "softmax",
        num_factors: int = 10,
        parameter_efficient: bool = False,
        temperature: float = 1.0,
        train_mc_samples: int = 100,
        test_mc_samples: int = 1000,
        min_scale: float = 1e-3,
        rng_stream: str = "heteroscedastic",
        loc: Any = DenseHead,
        dense: Any = nnx.Linear,
        loc_variance: str | None = None,
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ):
        if link not in LINKS:
            raise UsageError(
                f"unknown heteroscedastic link '{link}'; choose one of: {', '.join(LINKS)}"
            )
        k, r = num_classes, num_factors
        self.num_classes, self.num_factors, self.link = k, r, link
        self.temperature, self.min_scale = temperature, min_scale
        self.train_mc_samples, self.test_mc_samples = train_mc_samples, test_mc_samples
        self.rng_stream, self.loc_variance = rng_stream, loc_variance
        self.deterministic = deterministic
        self.mean = loc(in_features, k, rngs=rngs)
        self.diag_scale = dense(in_features, k, rngs=rngs)
        factor_gain = factor_loadings = None
        if r > 0 and parameter_efficient:
            init = nnx.initializers.lecun_normal()
            factor_loadings = nnx.Param(init(rngs.params(), (k, r)))
            factor_gain = dense(in_features, k, rngs=rngs)
        elif r > 0:
            factor_loadings = dense(in_features, k * r, rngs=rngs)
        self.factor_gain = nnx.data(factor_gain)
        self.factor_loadings = nnx.data(factor_loadings)
        self.rngs = fork_stream(rngs, rng_stream)

    def __call__(self, features: jax.Array, *, rngs: RngsArg = None) -> tuple[jax.Array, dict]:
        mean_logits, extras = self.mean(features)
        diag_scale = jax.nn.softplus(self.diag_scale(features)) + self.min_scale
        factor_loadings = None
        if self.factor_gain is not None:
            gain = self.factor_gain(features)  # [N, K]
            factor_loadings = gain[:, :, None] * self.factor_loadings[...][None]  # [N, K, R]
        elif self.factor_loadings is not None:
            flat = self.factor_loadings(features)
            # [N, K*R] -> [N, K, R]
            factor_loadings = flat.reshape(flat.shape[0], self.num_classes, self.num_factors)
        if self.loc_variance is not None and self.deterministic:
            variance = extras[self.loc_variance]
            variance = variance[:, None] if variance.ndim == 1 else variance  # [N] -> [N, 1]
            diag_scale = jnp.sqrt(jnp.square(diag_scale) + variance)
        num_samples = self.test_mc_samples if self.deterministic else self.train_mc_samples
        key = draw_key(self, rngs, self.rng_stream)
        noise = logit_noise(key, diag_scale, factor_loadings, num_samples)
        logits = mc_link_logits(mean_logits, noise, self.temperature, self.link)
        return logits, {**extras, "logit_variance": logit_variance(diag_scale, factor_loadings)}

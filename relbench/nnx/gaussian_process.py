"""The NNX SNGP head over ``relbench.layers.gaussian_process``.

Random Fourier features, a linear output layer and a Laplace precision
(``LaplacePrecision``) updated in training by that module's ``update_precision``; in
evaluation the head also returns the predictive variance of each logit
(``predictive_variance``). See that module's docstring for the math and references.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from relbench.layers import gaussian_process as core
from relbench.layers.state_types import LaplacePrecision
from relbench.nnx.random_features import RandomFourierFeatures


class RandomFeatureGaussianProcess(nnx.Module):
    """The SNGP head: features ``[N, in_features]`` -> ``(logits [N, K], extras)``.

    Takes the settings of the Linen ``RandomFeatureGaussianProcess`` (checked by it),
    plus ``in_features``, ``deterministic`` (evaluation mode; ``model.train()`` /
    ``eval()`` set it) and ``rngs`` (the random features and the output layer are drawn
    from ``rngs.params``).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        num_features: int = 1024,
        kernel_scale: float = 1.0,
        orthogonal_features: bool = False,
        normalize_input: bool = False,
        ridge: float = 1.0,
        momentum: float | None = None,
        precision: str = "shared",
        link: str = "softmax",
        output_bias: bool = True,
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ):
        core.RandomFeatureGaussianProcess(
            num_classes, ridge=ridge, momentum=momentum, precision=precision, link=link
        )._check()
        self.ridge, self.momentum, self.link = ridge, momentum, link
        self.per_class = precision == "per_class"
        self.deterministic = deterministic
        self.input_norm = nnx.LayerNorm(in_features, rngs=rngs) if normalize_input else None
        self.features = RandomFourierFeatures(
            in_features, num_features, kernel_scale, orthogonal_features, rngs=rngs
        )
        self.output = nnx.Linear(num_features, num_classes, use_bias=output_bias, rngs=rngs)
        self.precision = LaplacePrecision(
            core.init_precision(num_features, ridge, num_classes if self.per_class else None)
        )

    def __call__(self, features: jax.Array) -> tuple[jax.Array, dict]:
        x = features if self.input_norm is None else self.input_norm(features)
        phi = self.features(x)
        logits = self.output(phi)
        if not self.deterministic:
            weights = None
            if self.per_class:
                weights = core.hessian_weights(lax.stop_gradient(logits), self.link)
            self.precision[...] = core.update_precision(
                self.precision[...], lax.stop_gradient(phi), weights, self.momentum
            )
            return logits, {}
        variance = core.predictive_variance(self.precision[...], phi, self.ridge)
        if not self.per_class:
            variance = jnp.broadcast_to(variance[:, None], logits.shape)  # [N] -> [N, K]
        return logits, {"variance": variance}

"""NNX random Fourier features over ``relbench.layers.random_features``.

The frequencies and phases are drawn once, at construction, from the ``rng_stream``
stream of ``rngs`` (``"params"`` by default) by that module's ``gaussian_frequencies`` /
``orthogonal_frequencies`` and ``random_phases``, and kept frozen in ``RandomFeatures``
variables (not ``nnx.Param``: no gradient, no weight decay).
"""

from __future__ import annotations

import jax
from flax import nnx

from relbench.layers.random_features import (
    gaussian_frequencies,
    orthogonal_frequencies,
    random_fourier_features,
    random_phases,
)
from relbench.layers.state_types import RandomFeatures


class RandomFourierFeatures(nnx.Module):
    """``phi(x) = sqrt(2 / F) cos(W^T x + b)``: ``[N, in_features] -> [N, num_features]``."""

    def __init__(
        self,
        in_features: int,
        num_features: int,
        kernel_scale: float = 1.0,
        orthogonal: bool = False,
        rng_stream: str = "params",
        *,
        rngs: nnx.Rngs,
    ):
        draw = orthogonal_frequencies if orthogonal else gaussian_frequencies
        stream = rngs[rng_stream]
        self.frequencies = RandomFeatures(draw(stream(), in_features, num_features, kernel_scale))
        self.phases = RandomFeatures(random_phases(stream(), num_features))

    def __call__(self, inputs: jax.Array) -> jax.Array:
        return random_fourier_features(inputs, self.frequencies[...], self.phases[...])

"""A multilayer perceptron."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

from relbench.models.classifier import Classifier
from relbench.models.layer_types import LayerTypes


class MLP(Classifier):
    """Dense -> activation -> dropout blocks, then the head.

    Attributes:
      hidden_sizes: the width of each hidden layer.
      activation: the nonlinearity.
    """

    hidden_sizes: Sequence[int] = (128, 128)
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    def trunk(self, x: jax.Array, layers: LayerTypes, *, train: bool) -> jax.Array:
        x = x.reshape(x.shape[0], -1)  # [M*B, ...] -> [M*B, D]
        for width in self.hidden_sizes:
            x = layers.drop(self.activation(layers.dense(width)(x)), train=train)
        return x

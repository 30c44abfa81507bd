"""A small convolutional network for 8x8, 28x28 and 32x32 images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.models.classifier import Classifier
from relbench.models.layer_types import LayerTypes


class CNN(Classifier):
    """Conv-norm-activation blocks (2x2 max-pool after each while the image is >= 8
    pixels), global average pooling, a dense hidden layer with dropout, and the head.

    Attributes:
      features: channels of each conv block.
      hidden_size: width of the dense layer before the head.
      activation: the nonlinearity.
    """

    features: Sequence[int] = (32, 64)
    hidden_size: int = 128
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    def trunk(self, x: jax.Array, layers: LayerTypes, *, train: bool) -> jax.Array:
        for channels in self.features:
            # No bias before a batch norm: its mean subtraction removes it.
            x = layers.conv(channels, (3, 3), use_bias=False)(x)
            x = self.activation(layers.norm()(x))
            if x.shape[1] >= 8:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = jnp.mean(x, axis=(1, 2))  # [M*B, H, W, C] -> [M*B, C]
        x = layers.drop(x, train=train)
        x = self.activation(layers.dense(self.hidden_size)(x))
        return layers.drop(x, train=train)

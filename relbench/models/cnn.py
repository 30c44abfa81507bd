"""A small convolutional network for 8x8, 28x28 and 32x32 images."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.layers.heads import DenseHead
from relbench.layers.members import tile_members
from relbench.models.classifier import bind_train, member_outputs

ModuleDef = Any


class CNN(nn.Module):
    """Conv-norm-activation blocks (2x2 max-pool after each while the image is >= 8
    pixels), global average pooling, a dense hidden layer with dropout, and a head.

    Attributes:
      num_classes: K.
      features: channels of each conv block.
      hidden_size: width of the dense layer before the head.
      dropout_rate: dropout before the dense layer and before the head.
      ensemble_size: M; the input is tiled member-major.
      conv, norm, dense, dropout, head: the layer types, replaced by methods.
    """

    num_classes: int
    features: Sequence[int] = (32, 64)
    hidden_size: int = 128
    dropout_rate: float = 0.0
    ensemble_size: int = 1
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm
    dense: ModuleDef = nn.Dense
    dropout: ModuleDef = nn.Dropout
    head: ModuleDef = DenseHead

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        norm = functools.partial(self.norm, use_running_average=not train)
        conv, dense = bind_train(self.conv, train), bind_train(self.dense, train)
        x = tile_members(inputs, self.ensemble_size)  # [B, H, W, C] -> [M*B, H, W, C]
        for channels in self.features:
            x = self.activation(norm()(conv(channels, (3, 3))(x)))
            if x.shape[1] >= 8:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = jnp.mean(x, axis=(1, 2))  # [M*B, H, W, C] -> [M*B, C]
        x = self.dropout(self.dropout_rate)(x, deterministic=not train)
        x = self.activation(dense(self.hidden_size)(x))
        x = self.dropout(self.dropout_rate)(x, deterministic=not train)
        logits, extras = self.head(self.num_classes)(x, train=train)
        return member_outputs(logits, extras, self.ensemble_size)

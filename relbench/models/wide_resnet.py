"""Wide residual networks [1], the CIFAR backbone of Uncertainty Baselines [2].

WRN-d-k: a 3x3 stem with 16 channels, three stages of ``n = (d - 4) / 6`` pre-activation
blocks (BN -> ReLU -> 3x3 conv, twice) with ``16k, 32k, 64k`` channels, a 1x1 projection
shortcut where the shape changes, a final BN -> ReLU, global average pooling and a
head. WRN-28-10 has the published 36.5M parameters. Dropout (``layers.dropout_rate``) sits
between the two convolutions of each block, as in [1], and before the head.

References:
  [1] Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016.
      https://arxiv.org/abs/1605.07146
  [2] Nado et al. Uncertainty Baselines: Benchmarks for Uncertainty & Robustness in
      Deep Learning. 2021. https://arxiv.org/abs/2106.04015
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.models.classifier import Classifier
from relbench.models.layer_types import LayerTypes, ResNetBatchNorm


class WideBlock(nn.Module):
    """A pre-activation basic block; the shortcut is projected when the shape changes."""

    features: int
    stride: int
    layers: LayerTypes
    activation: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv, norm, s = self.layers.conv, self.layers.norm, (self.stride, self.stride)
        y = self.activation(norm()(x))
        if x.shape[-1] != self.features or self.stride != 1:
            x = conv(self.features, (1, 1), s, use_bias=False)(y)
        y = conv(self.features, (3, 3), s, use_bias=False)(y)
        y = self.layers.drop(self.activation(norm()(y)), train=train)
        y = conv(self.features, (3, 3), use_bias=False)(y)
        return x + y


class WideResNet(Classifier):
    """WRN-``depth``-``width_multiplier`` [1]; the defaults are WRN-28-10.

    Attributes:
      depth: ``6n + 4`` (28 in [1, 2]; 10 gives a tiny test network).
      width_multiplier: k (10 in [1, 2]).
      activation: the nonlinearity.
    """

    layers: LayerTypes = LayerTypes(norm=ResNetBatchNorm)
    depth: int = 28
    width_multiplier: int = 10
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    def trunk(self, x: jax.Array, layers: LayerTypes, *, train: bool) -> jax.Array:
        if (self.depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {self.depth}")
        blocks_per_stage = (self.depth - 4) // 6
        x = layers.conv(16, (3, 3), use_bias=False)(x)
        for stage, channels in enumerate((16, 32, 64)):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                x = WideBlock(channels * self.width_multiplier, stride, layers, self.activation)(
                    x, train=train
                )
        x = self.activation(layers.norm()(x))
        x = jnp.mean(x, axis=(1, 2))  # [M*B, H, W, C] -> [M*B, C]
        return layers.drop(x, train=train)

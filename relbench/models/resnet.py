"""Residual networks: CIFAR-style ResNet-20/32/56 and ImageNet ResNet-50.

* ``CifarResNet`` [1, Sec. 4.2]: a 3x3 stem with 16 channels, three stages of ``n``
  basic blocks with 16, 32, 64 channels (depth ``6n + 2``), global average pooling and a
  head. Shortcuts that change shape subsample and zero-pad the channels (the paper's
  option A), so ResNet-20/32/56 have the published 0.27M / 0.46M / 0.85M parameters.
* ``ResNet`` [1, Sec. 3.4]: the ImageNet network, a 7x7 stride-2 stem, 3x3 max-pool and
  four stages of bottleneck blocks (1x1 -> 3x3 -> 1x1, expansion 4) with projection
  shortcuts; stages (3, 4, 6, 3) give ResNet-50 with 25.6M parameters. The stride sits
  on the 3x3 convolution ("v1.5"), as in torchvision and Uncertainty Baselines [2].

Every layer is built from the model's ``layers`` (``LayerTypes``), so a method swaps in
spectral-normalized, ensemble or variational layers without a new class; batch norm
defaults to momentum 0.9 and epsilon 1e-5, as in [1, 2]. Dropout (``layers.dropout_rate``,
0 by default) follows every hidden activation inside a block and precedes the head,
where MC dropout needs it.

References:
  [1] He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
      https://arxiv.org/abs/1512.03385
  [2] Nado et al. Uncertainty Baselines: Benchmarks for Uncertainty & Robustness in
      Deep Learning. 2021. https://arxiv.org/abs/2106.04015
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.models.classifier import Classifier
from relbench.models.layer_types import LayerTypes, ResNetBatchNorm

Activation = Callable[[jax.Array], jax.Array]


def pad_shortcut(x: jax.Array, features: int, stride: int) -> jax.Array:
    """Option-A shortcut [1]: subsample by ``stride`` and zero-pad the channels."""
    x = x[:, ::stride, ::stride, :]  # [N, H, W, C] -> [N, H/s, W/s, C]
    extra = features - x.shape[-1]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with post-activation batch norm and an option-A shortcut."""

    features: int
    stride: int
    layers: LayerTypes
    activation: Activation

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv, norm, s = self.layers.conv, self.layers.norm, (self.stride, self.stride)
        y = self.activation(norm()(conv(self.features, (3, 3), s, use_bias=False)(x)))
        y = self.layers.drop(y, train=train)
        y = norm()(conv(self.features, (3, 3), use_bias=False)(y))
        if x.shape[-1] != self.features or self.stride != 1:
            x = pad_shortcut(x, self.features, self.stride)
        return self.activation(x + y)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (x4 channels) with a projection shortcut if needed."""

    features: int
    stride: int
    layers: LayerTypes
    activation: Activation
    expansion: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv, norm, s = self.layers.conv, self.layers.norm, (self.stride, self.stride)
        out = self.features * self.expansion
        y = self.activation(norm()(conv(self.features, (1, 1), use_bias=False)(x)))
        y = self.layers.drop(y, train=train)
        y = self.activation(norm()(conv(self.features, (3, 3), s, use_bias=False)(y)))
        y = self.layers.drop(y, train=train)
        y = norm()(conv(out, (1, 1), use_bias=False)(y))
        if x.shape[-1] != out or self.stride != 1:
            x = norm()(conv(out, (1, 1), s, use_bias=False)(x))
        return self.activation(x + y)


class CifarResNet(Classifier):
    """ResNet-(6n+2) for 32x32 images [1, Sec. 4.2].

    Attributes:
      depth: 20, 32, 56, 110... (``6n + 2``).
      width: channels of the first stage (16 in [1]); the stages use 1x, 2x, 4x.
      activation: the nonlinearity.
    """

    layers: LayerTypes = LayerTypes(norm=ResNetBatchNorm)
    depth: int = 20
    width: int = 16
    activation: Activation = nn.relu

    def trunk(self, x: jax.Array, layers: LayerTypes, *, train: bool) -> jax.Array:
        if (self.depth - 2) % 6:
            raise ValueError(f"CifarResNet depth must be 6n + 2, got {self.depth}")
        blocks_per_stage = (self.depth - 2) // 6
        x = self.activation(layers.norm()(layers.conv(self.width, (3, 3), use_bias=False)(x)))
        for stage, multiplier in enumerate((1, 2, 4)):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(self.width * multiplier, stride, layers, self.activation)(
                    x, train=train
                )
        x = jnp.mean(x, axis=(1, 2))  # [M*B, H, W, C] -> [M*B, C]
        return layers.drop(x, train=train)


class ResNet(Classifier):
    """ImageNet ResNet with bottleneck blocks [1]; the defaults are ResNet-50.

    Attributes:
      stage_sizes: bottleneck blocks per stage: (3, 4, 6, 3) is ResNet-50,
        (3, 4, 23, 3) ResNet-101.
      width: channels of the stem and of the first stage's bottleneck (64 in [1]).
      activation: the nonlinearity.
    """

    layers: LayerTypes = LayerTypes(norm=ResNetBatchNorm)
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    activation: Activation = nn.relu

    def trunk(self, x: jax.Array, layers: LayerTypes, *, train: bool) -> jax.Array:
        x = layers.conv(self.width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False)(x)
        x = self.activation(layers.norm()(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = BottleneckBlock(self.width * 2**stage, stride, layers, self.activation)(
                    x, train=train
                )
        x = jnp.mean(x, axis=(1, 2))  # [M*B, H, W, C] -> [M*B, C]
        return layers.drop(x, train=train)

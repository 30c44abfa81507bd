"""Wide residual networks [1], the CIFAR backbone of Uncertainty Baselines [2].

WRN-d-k: a 3x3 stem with 16 channels, three stages of ``n = (d - 4) / 6`` pre-activation
blocks (BN -> ReLU -> 3x3 conv, twice) with ``16k, 32k, 64k`` channels, a 1x1 projection
shortcut where the shape changes, a final BN -> ReLU, global average pooling and a
head. WRN-28-10 has the published 36.5M parameters. Dropout (``dropout_rate``) sits
between the two convolutions of each block, as in [1], and before the head.

References:
  [1] Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016.
      https://arxiv.org/abs/1605.07146
  [2] Nado et al. Uncertainty Baselines: Benchmarks for Uncertainty & Robustness in
      Deep Learning. 2021. https://arxiv.org/abs/2106.04015
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.layers.heads import DenseHead
from relbench.layers.members import tile_members
from relbench.models.classifier import bind_train, member_outputs
from relbench.models.resnet import BatchNorm

ModuleDef = Any


class WideBlock(nn.Module):
    """A pre-activation basic block; the shortcut is projected when the shape changes."""

    features: int
    stride: int
    conv: ModuleDef
    norm: ModuleDef
    dropout: ModuleDef
    dropout_rate: float
    activation: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = functools.partial(self.norm, use_running_average=not train)
        s = (self.stride, self.stride)
        y = self.activation(norm()(x))
        if x.shape[-1] != self.features or self.stride != 1:
            x = self.conv(self.features, (1, 1), s, use_bias=False)(y)
        y = self.conv(self.features, (3, 3), s, use_bias=False)(y)
        y = self.activation(norm()(y))
        y = self.dropout(self.dropout_rate)(y, deterministic=not train)
        y = self.conv(self.features, (3, 3), use_bias=False)(y)
        return x + y


class WideResNet(nn.Module):
    """WRN-``depth``-``width_multiplier`` [1]; the defaults are WRN-28-10.

    Attributes:
      num_classes: K.
      depth: ``6n + 4`` (28 in [1, 2]; 10 gives a tiny test network).
      width_multiplier: k (10 in [1, 2]).
      dropout_rate: dropout between the convolutions of a block and before the head.
      ensemble_size: M; the input is tiled member-major.
      activation: the nonlinearity.
      conv, norm, dropout, head: the layer types, replaced by methods.
      dense: unused by this all-convolutional trunk; a field so that a method that
        sets it (as it does for MLPs) works on every model.
    """

    num_classes: int
    depth: int = 28
    width_multiplier: int = 10
    dropout_rate: float = 0.0
    ensemble_size: int = 1
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm
    dense: ModuleDef = nn.Dense
    dropout: ModuleDef = nn.Dropout
    head: ModuleDef = DenseHead

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        if (self.depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {self.depth}")
        blocks_per_stage = (self.depth - 4) // 6
        conv = bind_train(self.conv, train)
        x = tile_members(inputs, self.ensemble_size)  # [B, H, W, C] -> [M*B, H, W, C]
        x = conv(16, (3, 3), use_bias=False)(x)
        for stage, channels in enumerate((16, 32, 64)):
            for block in range(blocks_per_stage):
                x = WideBlock(
                    channels * self.width_multiplier,
                    2 if stage > 0 and block == 0 else 1,
                    conv,
                    self.norm,
                    self.dropout,
                    self.dropout_rate,
                    self.activation,
                )(x, train=train)
        x = self.activation(self.norm(use_running_average=not train)(x))
        x = jnp.mean(x, axis=(1, 2))  # [M*B, H, W, C] -> [M*B, C]
        x = self.dropout(self.dropout_rate)(x, deterministic=not train)
        logits, extras = self.head(self.num_classes)(x, train=train)
        return member_outputs(logits, extras, self.ensemble_size)

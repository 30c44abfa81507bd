"""A small Vision Transformer [1] whose every projection is the ``dense`` field.

The image is cut into ``patch_size`` x ``patch_size`` patches, each linearly embedded
(a strided ``conv``); a learned class token and learned position embeddings are added,
and ``num_layers`` pre-norm encoder blocks follow:

    x <- x + Attention(Norm(x)),   x <- x + MLP(Norm(x)),

with multi-head scaled dot-product attention ``softmax(Q K^T / sqrt(d)) V`` [2]. The
head reads the class token after a final norm. Queries, keys, values, the output
projection and both MLP layers are built from ``dense``, so a method that replaces
dense layers (spectral normalization, ensembles, variational layers) reaches all of
them. Its normalization is layer norm, a field of the model (``layer_norm``): the
``layers.norm`` of the convolutional models is batch norm, which ensemble methods
replace by per-member batch norms.

References:
  [1] Dosovitskiy et al. An Image is Worth 16x16 Words: Transformers for Image
      Recognition at Scale. ICLR 2021. https://arxiv.org/abs/2010.11929
  [2] Vaswani et al. Attention Is All You Need. NeurIPS 2017.
      https://arxiv.org/abs/1706.03762
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.layers.mixed_precision import with_dtype
from relbench.models.classifier import Classifier
from relbench.models.layer_types import LayerTypes

ModuleDef = Any


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """``softmax(q k^T / sqrt(d)) v`` per head: ``[N, T, H, d]`` in, ``[N, T, H, d]`` out."""
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    # The softmax in float32 whatever the compute dtype (relbench.layers.mixed_precision).
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("nhqk,nkhd->nqhd", weights, v)


class EncoderBlock(nn.Module):
    """Pre-norm self-attention and MLP, each with a residual connection."""

    num_heads: int
    mlp_dim: int
    layers: LayerTypes
    layer_norm: ModuleDef
    activation: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        n, t, width = x.shape
        head_dim = width // self.num_heads
        dense, layer_norm = self.layers.dense, with_dtype(self.layer_norm, self.layers.dtype)
        y = layer_norm()(x)
        # [N, T, D] -> [N, T, H, D/H] for each of q, k, v.
        q, k, v = (
            dense(width, name=name)(y).reshape(n, t, self.num_heads, head_dim)
            for name in ("query", "key", "value")
        )
        y = dot_product_attention(q, k, v).reshape(n, t, width)  # [N, T, H, D/H] -> [N, T, D]
        x = x + self.layers.drop(dense(width, name="out")(y), train=train)
        y = self.activation(dense(self.mlp_dim)(layer_norm()(x)))
        y = dense(width)(self.layers.drop(y, train=train))
        return x + self.layers.drop(y, train=train)


class VisionTransformer(Classifier):
    """ViT classifier [1]; the defaults are a small ViT for 32x32 images.

    Attributes:
      patch_size: side of the square patches.
      hidden_size: D, the token width.
      num_layers: encoder blocks.
      num_heads: attention heads (must divide ``hidden_size``).
      mlp_dim: hidden width of each block's MLP.
      activation: the MLP nonlinearity.
      layer_norm: the normalization of the encoder blocks.
    """

    patch_size: int = 4
    hidden_size: int = 192
    num_layers: int = 6
    num_heads: int = 3
    mlp_dim: int = 384
    activation: Callable[[jax.Array], jax.Array] = nn.gelu
    layer_norm: ModuleDef = nn.LayerNorm

    def trunk(self, x: jax.Array, layers: LayerTypes, *, train: bool) -> jax.Array:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        p = (self.patch_size, self.patch_size)
        x = layers.conv(self.hidden_size, p, strides=p, padding="VALID", name="embedding")(x)
        n = x.shape[0]
        x = x.reshape(n, -1, self.hidden_size)  # [N, H/p, W/p, D] -> [N, T, D]
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.hidden_size)).astype(x.dtype)
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, self.hidden_size)), x], axis=1)
        positions = self.param(
            "position_embedding", nn.initializers.normal(0.02), (1, *x.shape[1:])
        ).astype(x.dtype)
        x = layers.drop(x + positions, train=train)
        for _ in range(self.num_layers):
            block = EncoderBlock(
                self.num_heads, self.mlp_dim, layers, self.layer_norm, self.activation
            )
            x = block(x, train=train)
        x = with_dtype(self.layer_norm, layers.dtype)()(x)[
            :, 0
        ]  # the class token: [N, T, D] -> [N, D]
        return layers.drop(x, train=train)

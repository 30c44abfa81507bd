"""A small Vision Transformer [1] whose every projection is the ``dense`` field.

The image is cut into ``patch_size`` x ``patch_size`` patches, each linearly embedded
(a strided ``conv``); a learned class token and learned position embeddings are added,
and ``num_layers`` pre-norm encoder blocks follow:

    x <- x + Attention(Norm(x)),   x <- x + MLP(Norm(x)),

with multi-head scaled dot-product attention ``softmax(Q K^T / sqrt(d)) V`` [2]. The
head reads the class token after a final norm. Queries, keys, values, the output
projection and both MLP layers are built from ``dense``, so a method that replaces
dense layers (spectral normalization, ensembles, variational layers) reaches all of
them. Its normalization is ``layer_norm``; the ``norm`` field (batch norm in the
convolutional models, which ensemble methods replace) is accepted and unused.

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

from relbench.layers.heads import DenseHead
from relbench.layers.members import tile_members
from relbench.models.classifier import bind_train, member_outputs

ModuleDef = Any


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """``softmax(q k^T / sqrt(d)) v`` per head: ``[N, T, H, d]`` in, ``[N, T, H, d]`` out."""
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    return jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(logits, axis=-1), v)


class EncoderBlock(nn.Module):
    """Pre-norm self-attention and MLP, each with a residual connection."""

    num_heads: int
    mlp_dim: int
    dense: ModuleDef
    layer_norm: ModuleDef
    dropout: ModuleDef
    dropout_rate: float
    activation: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        n, t, width = x.shape
        head_dim = width // self.num_heads
        y = self.layer_norm()(x)
        # [N, T, D] -> [N, T, H, D/H] for each of q, k, v.
        q, k, v = (
            self.dense(width, name=name)(y).reshape(n, t, self.num_heads, head_dim)
            for name in ("query", "key", "value")
        )
        y = dot_product_attention(q, k, v).reshape(n, t, width)  # [N, T, H, D/H] -> [N, T, D]
        y = self.dense(width, name="out")(y)
        x = x + self.dropout(self.dropout_rate)(y, deterministic=not train)
        y = self.activation(self.dense(self.mlp_dim)(self.layer_norm()(x)))
        y = self.dropout(self.dropout_rate)(y, deterministic=not train)
        y = self.dense(width)(y)
        return x + self.dropout(self.dropout_rate)(y, deterministic=not train)


class VisionTransformer(nn.Module):
    """ViT classifier [1]; the defaults are a small ViT for 32x32 images.

    Attributes:
      num_classes: K.
      patch_size: side of the square patches.
      hidden_size: D, the token width.
      num_layers: encoder blocks.
      num_heads: attention heads (must divide ``hidden_size``).
      mlp_dim: hidden width of each block's MLP.
      dropout_rate: dropout after attention, in and after the MLP, and before the head.
      ensemble_size: M; the input is tiled member-major.
      activation: the MLP nonlinearity.
      conv: the patch embedding; dense, layer_norm, dropout, head: the other layer types.
      norm: unused (no batch norm here); a field so that a method that sets it works.
    """

    num_classes: int
    patch_size: int = 4
    hidden_size: int = 192
    num_layers: int = 6
    num_heads: int = 3
    mlp_dim: int = 384
    dropout_rate: float = 0.0
    ensemble_size: int = 1
    activation: Callable[[jax.Array], jax.Array] = nn.gelu
    conv: ModuleDef = nn.Conv
    layer_norm: ModuleDef = nn.LayerNorm
    norm: ModuleDef = nn.BatchNorm
    dense: ModuleDef = nn.Dense
    dropout: ModuleDef = nn.Dropout
    head: ModuleDef = DenseHead

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        p = (self.patch_size, self.patch_size)
        conv, dense = bind_train(self.conv, train), bind_train(self.dense, train)
        x = tile_members(inputs, self.ensemble_size)  # [B, H, W, C] -> [M*B, H, W, C]
        x = conv(self.hidden_size, p, strides=p, padding="VALID", name="embedding")(x)
        n = x.shape[0]
        x = x.reshape(n, -1, self.hidden_size)  # [N, H/p, W/p, D] -> [N, T, D]
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.hidden_size))
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, self.hidden_size)), x], axis=1)
        positions = self.param(
            "position_embedding", nn.initializers.normal(0.02), (1, *x.shape[1:])
        )
        x = self.dropout(self.dropout_rate)(x + positions, deterministic=not train)
        for _ in range(self.num_layers):
            x = EncoderBlock(
                self.num_heads,
                self.mlp_dim,
                dense,
                self.layer_norm,
                self.dropout,
                self.dropout_rate,
                self.activation,
            )(x, train=train)
        x = self.layer_norm()(x)[:, 0]  # the class token: [N, T, D] -> [N, D]
        x = self.dropout(self.dropout_rate)(x, deterministic=not train)
        logits, extras = self.head(self.num_classes)(x, train=train)
        return member_outputs(logits, extras, self.ensemble_size)

"""A multilayer perceptron whose layer types are constructor fields."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax

from relbench.layers.heads import DenseHead
from relbench.layers.members import tile_members
from relbench.models.classifier import bind_train, member_outputs

ModuleDef = Any


class MLP(nn.Module):
    """Dense -> activation -> dropout blocks, then a head.

    Attributes:
      num_classes: K.
      hidden_sizes: the width of each hidden layer.
      dropout_rate: dropout after every hidden activation.
      ensemble_size: M; the input is tiled member-major (see ``layers.members``).
      activation: the nonlinearity.
      dense, dropout, head: the layer types; methods replace them (spectral-normalized
        dense, MC dropout, a GP head...) without a new model class.
      conv, norm: unused (an MLP has no convolution and no normalization); accepted so
        that a method replacing every layer type builds any model.
    """

    num_classes: int
    hidden_sizes: Sequence[int] = (128, 128)
    dropout_rate: float = 0.0
    ensemble_size: int = 1
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    dense: ModuleDef = nn.Dense
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm
    dropout: ModuleDef = nn.Dropout
    head: ModuleDef = DenseHead

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        dense = bind_train(self.dense, train)
        x = inputs.reshape(inputs.shape[0], -1)  # [B, ...] -> [B, D]
        x = tile_members(x, self.ensemble_size)  # [B, D] -> [M*B, D]
        for width in self.hidden_sizes:
            x = self.activation(dense(width)(x))
            x = self.dropout(self.dropout_rate)(x, deterministic=not train)
        logits, extras = self.head(self.num_classes)(x, train=train)
        return member_outputs(logits, extras, self.ensemble_size)

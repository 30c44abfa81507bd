"""An LSTM text classifier whose recurrent cell is a constructor field.

Token ids ``[B, T]`` (0 is padding, sequences right-padded) are embedded, run through
one recurrent layer built from ``cell`` (any cell with the Flax RNN-cell interface:
``cell(features=...)``, ``initialize_carry``, ``(carry, x) -> (carry, y)``; the default
is the LSTM of [1]), and the output at each sequence's last real token goes through
dropout to the head. A Bayesian (variational) LSTM cell [2] plugs in through ``cell``
without a new model class.

References:
  [1] Hochreiter, Schmidhuber. Long Short-Term Memory. Neural Computation 1997.
      https://doi.org/10.1162/neco.1997.9.8.1735
  [2] Fortunato, Blundell, Vinyals. Bayesian Recurrent Neural Networks. 2017.
      https://arxiv.org/abs/1704.02798
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.layers.heads import DenseHead
from relbench.layers.members import tile_members
from relbench.models.classifier import member_outputs

ModuleDef = Any


class LSTMClassifier(nn.Module):
    """Embedding -> recurrent layer -> last real output -> head.

    Attributes:
      num_classes: K.
      vocab_size: number of token ids (id 0 is padding).
      embed_dim: width of the token embeddings.
      hidden_size: the cell's ``features``.
      dropout_rate: dropout on the embeddings and before the head.
      ensemble_size: M; the input is tiled member-major.
      cell: the recurrent cell type (default ``flax.linen.OptimizedLSTMCell``).
      embed: the embedding type (``embed(num_embeddings, features)``).
      dropout, head: the other layer types, replaced by methods.
      dense, conv, norm, activation: unused by this model; fields so that a method that
        sets them on every model works here too.
    """

    num_classes: int
    vocab_size: int = 8192
    embed_dim: int = 128
    hidden_size: int = 256
    dropout_rate: float = 0.0
    ensemble_size: int = 1
    cell: ModuleDef = nn.OptimizedLSTMCell
    embed: ModuleDef = nn.Embed
    dense: ModuleDef = nn.Dense
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.LayerNorm
    activation: Callable[[jax.Array], jax.Array] = nn.tanh
    dropout: ModuleDef = nn.Dropout
    head: ModuleDef = DenseHead

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        tokens = tile_members(inputs.astype(jnp.int32), self.ensemble_size)  # [M*B, T]
        lengths = jnp.maximum(jnp.sum(tokens != 0, axis=1), 1)  # [M*B]
        x = self.embed(self.vocab_size, self.embed_dim)(tokens)  # [M*B, T, E]
        x = self.dropout(self.dropout_rate)(x, deterministic=not train)
        outputs = nn.RNN(self.cell(features=self.hidden_size))(x, seq_lengths=lengths)
        last = outputs[jnp.arange(outputs.shape[0]), lengths - 1]  # [M*B, T, H] -> [M*B, H]
        last = self.dropout(self.dropout_rate)(last, deterministic=not train)
        logits, extras = self.head(self.num_classes)(last, train=train)
        return member_outputs(logits, extras, self.ensemble_size)

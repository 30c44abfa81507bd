"""An LSTM text classifier whose recurrent cell is a constructor field.

Token ids ``[B, T]`` (0 is padding, sequences right-padded) are embedded, run through
one recurrent layer built from ``layers.cell`` (any cell with the Flax RNN-cell
interface: ``cell(features=...)``, ``initialize_carry``, ``(carry, x) -> (carry, y)``;
the default is the LSTM of [1]), and the output at each sequence's last real token goes
through dropout to the head. A Bayesian (variational) LSTM cell [2] plugs in through
``layers.cell`` without a new model class.

References:
  [1] Hochreiter, Schmidhuber. Long Short-Term Memory. Neural Computation 1997.
      https://doi.org/10.1162/neco.1997.9.8.1735
  [2] Fortunato, Blundell, Vinyals. Bayesian Recurrent Neural Networks. 2017.
      https://arxiv.org/abs/1704.02798
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.layers.mixed_precision import with_dtype
from relbench.models.classifier import Classifier
from relbench.models.layer_types import LayerTypes

ModuleDef = Any


class LSTMClassifier(Classifier):
    """Embedding -> recurrent layer -> last real output -> head.

    Attributes:
      vocab_size: number of token ids (id 0 is padding).
      embed_dim: width of the token embeddings.
      hidden_size: the cell's ``features``.
      embed: the embedding type (``embed(num_embeddings, features)``).
    """

    vocab_size: int = 8192
    embed_dim: int = 128
    hidden_size: int = 256
    embed: ModuleDef = nn.Embed

    def trunk(self, x: jax.Array, layers: LayerTypes, *, train: bool) -> jax.Array:
        tokens = x.astype(jnp.int32)  # [M*B, T]
        lengths = jnp.maximum(jnp.sum(tokens != 0, axis=1), 1)  # [M*B]
        embed = with_dtype(self.embed, layers.dtype)
        x = layers.drop(embed(self.vocab_size, self.embed_dim)(tokens), train=train)
        outputs = nn.RNN(layers.cell(features=self.hidden_size))(x, seq_lengths=lengths)
        last = outputs[jnp.arange(outputs.shape[0]), lengths - 1]  # [M*B, T, H] -> [M*B, H]
        return layers.drop(last, train=train)

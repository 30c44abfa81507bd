"""The layer types a model is built from: one record, whose fields methods replace.

A model never names a concrete dense, convolution, normalization, dropout or output
layer: it builds every one of them from its ``layers: LayerTypes`` field. A method
changes what a model is made of by returning another record (SNGP: spectral-normalized
``dense`` and ``conv`` and a Gaussian-process ``head``; BatchEnsemble: ensemble layers
and ``ensemble_size = M``), so every method runs on every model without a new class.

Calling conventions (those of ``flax.linen``):

* ``dense(features)``, ``conv(features, kernel_size, strides, padding=..., use_bias=...)``;
* ``norm()`` (the mode comes from ``bound``);
* ``dropout(rate)(x, deterministic=...)``, with ``rate = dropout_rate``;
* ``head(num_classes)(features, train=...) -> (logits [N, K], extras)``;
* ``cell(features=...)``, the recurrent cell of sequence models.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax

from relbench.layers.heads import DenseHead
from relbench.layers.mixed_precision import bind_fields, with_dtype

ModuleDef = Any


@dataclasses.dataclass(frozen=True)
class LayerTypes:
    """Attributes:
    dense: the dense layer type.
    conv: the 2-D convolution type.
    norm: the normalization of convolutional trunks (batch norm by default).
    dropout: the dropout type (``flax.linen.Dropout``, or ``MCDropout``).
    dropout_rate: the rate of every dropout layer; 0 turns dropout off.
    head: the output layer; it sees the trunk's features ``[M * B, D]``.
    cell: the recurrent cell type of sequence models.
    ensemble_size: M, the members the model runs at once: it tiles its input
      member-major (``layers.members``) and returns ``[M, B, K]`` logits.
    dtype: the compute dtype of every layer (``None``: float32, the parameters'
      dtype); ``bound`` gives it to every type that takes a ``dtype`` field, and a
      model gives it to the layers it builds itself (``relbench.layers.mixed_precision``).
    """

    dense: ModuleDef = nn.Dense
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm
    dropout: ModuleDef = nn.Dropout
    dropout_rate: float = 0.0
    head: ModuleDef = DenseHead
    cell: ModuleDef = nn.OptimizedLSTMCell
    ensemble_size: int = 1
    dtype: Any = None

    def bound(self, train: bool) -> LayerTypes:
        """The same types with the mode and the compute dtype set on every type that
        takes them as fields."""
        dtype = self.dtype
        return dataclasses.replace(
            self,
            dense=with_dtype(bind_fields(self.dense, train=train), dtype),
            conv=with_dtype(bind_fields(self.conv, train=train), dtype),
            norm=with_dtype(bind_fields(self.norm, use_running_average=not train), dtype),
            head=with_dtype(self.head, dtype),
            cell=with_dtype(self.cell, dtype),
        )

    def drop(self, x: jax.Array, *, train: bool) -> jax.Array:
        """``x`` through a new dropout layer of rate ``dropout_rate`` (inside a model)."""
        return self.dropout(self.dropout_rate)(x, deterministic=not train)


#: Batch normalization as in ResNets [He et al. 2016] and Uncertainty Baselines:
#: momentum 0.9, epsilon 1e-5 (flax's default momentum is 0.99).
ResNetBatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)

"""A multilayer perceptron in Flax NNX, built from the NNX twins of its layer types.

``NNXMLP`` is the NNX counterpart of ``relbench.models.MLP`` for the one loop: the
model record the registry makes (its fields are the config's), whose ``init`` /
``apply`` run the NNX network through ``nnx.split`` / ``nnx.merge``
(``relbench.nnx.model``). A method's Linen layer types become their NNX twins
(``relbench.nnx.twins``), so every method whose layers have twins runs on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
from flax import nnx

from relbench.layers.members import tile_members
from relbench.models.classifier import FEATURES, member_outputs
from relbench.models.layer_types import LayerTypes
from relbench.nnx.model import NNXModel
from relbench.nnx.twins import nnx_type


class MLPNetwork(nnx.Module):
    """tile members -> (dense -> activation -> dropout) x len(hidden_sizes) -> head ->
    ``(logits [M, B, K], {"features": [M, B, D], ...})``."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden_sizes: Sequence[int],
        activation: Callable[[jax.Array], jax.Array],
        layers: LayerTypes,
        *,
        rngs: nnx.Rngs,
    ):
        dense, dropout, head = (nnx_type(t) for t in (layers.dense, layers.dropout, layers.head))
        self.members, self.activation = layers.ensemble_size, activation
        widths = (in_features, *hidden_sizes)
        for index, (width_in, width_out) in enumerate(zip(widths, widths[1:], strict=False)):
            setattr(self, f"dense_{index}", dense(width_in, width_out, rngs=rngs))
        self.depth = len(hidden_sizes)
        self.dropout = dropout(layers.dropout_rate, rngs=rngs)
        self.head = head(widths[-1], num_classes, rngs=rngs)

    def __call__(self, inputs: jax.Array) -> tuple[jax.Array, dict]:
        x = tile_members(inputs, self.members)  # [B, ...] -> [M*B, ...]
        x = x.reshape(x.shape[0], -1)  # [M*B, ...] -> [M*B, D]
        for index in range(self.depth):
            x = self.dropout(self.activation(getattr(self, f"dense_{index}")(x)))
        logits, extras = self.head(x)
        return member_outputs(logits, {FEATURES: x, **extras}, self.members)


@dataclasses.dataclass(frozen=True)
class NNXMLP(NNXModel):
    """Attributes (as ``relbench.models.MLP``'s):
    num_classes: K.
    layers: the layer types (Linen types or partials; their NNX twins are built).
    hidden_sizes: the width of each hidden layer.
    activation: the nonlinearity.
    """

    num_classes: int
    layers: LayerTypes = LayerTypes()
    hidden_sizes: Sequence[int] = (128, 128)
    activation: Callable[[jax.Array], jax.Array] = nnx.relu

    def build(self, input_shape: tuple[int, ...], rngs: nnx.Rngs) -> MLPNetwork:
        return MLPNetwork(
            math.prod(input_shape),
            self.num_classes,
            tuple(self.hidden_sizes),
            self.activation,
            self.layers,
            rngs=rngs,
        )

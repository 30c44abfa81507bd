"""What every model shares: members in, ``(logits [M, B, K], extras)`` out.

``Classifier`` is the one place that lays a batch out for M members and back: it tiles
the input member-major (``[B, ...] -> [M * B, ...]``, ``layers.members``), runs the
model's ``trunk`` to features ``[M * B, D]``, the head to logits ``[M * B, K]``, and
splits every output into the ``[M, B, ...]`` contract. A model is a subclass that
declares its shape hyperparameters and defines ``trunk``; the layer types come from
``layers`` (``LayerTypes``). The trunk's features travel as ``extras["features"]``
(``[M, B, D]``), for post-hoc steps and detectors that read the penultimate layer.

Whatever the compute dtype (``layers.dtype``), the outputs are float32, so that every
softmax, loss and metric downstream is computed in float32
(``relbench.layers.mixed_precision``).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from relbench.layers.members import split_members, tile_members
from relbench.layers.mixed_precision import as_float32
from relbench.models.layer_types import LayerTypes

FEATURES = "features"


def member_outputs(
    logits: jax.Array, extras: dict[str, jax.Array], members: int
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Head outputs on the member-major batch -> the ``[M, B, ...]`` model contract."""
    return split_members(logits, members), {
        name: split_members(value, members) for name, value in extras.items()
    }


class Classifier(nn.Module):
    """tile -> ``trunk`` -> ``layers.head`` -> ``[M, B, K]``.

    Attributes:
      num_classes: K (for regression, the number of outputs).
      layers: the layer types and the member count M.
    """

    num_classes: int
    layers: LayerTypes = LayerTypes()

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        layers = self.layers.bound(train)
        members = layers.ensemble_size
        x = tile_members(inputs, members)  # [B, ...] -> [M*B, ...]
        features = self.trunk(x, layers, train=train)  # [M*B, D]
        logits, extras = layers.head(self.num_classes)(features, train=train)
        # A head that changes the row layout (MIMO) sets its own features.
        outputs = as_float32((logits, {FEATURES: features, **extras}))
        return member_outputs(*outputs, members)

    def trunk(self, x: jax.Array, layers: LayerTypes, *, train: bool) -> jax.Array:
        """Member-major inputs ``[M * B, ...]`` -> features ``[M * B, D]``."""
        raise NotImplementedError(f"{type(self).__name__} defines no trunk")

"""Output heads: features ``[N, D]`` -> ``(logits [N, K], extras)``.

Every head returns a pair so that heads with extra outputs (an SNGP head's predictive
variance, say) plug into the same models without changing their return type.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from relbench.layers.mixed_precision import with_dtype

ModuleDef = Any


class DenseHead(nn.Module):
    """A linear classification head with no extra outputs; ``dtype`` is the compute
    dtype of its ``dense`` layer (``None``: the dense layer's own)."""

    num_classes: int
    dense: ModuleDef = nn.Dense
    dtype: Any = None

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        del train  # a plain linear map behaves the same in training and evaluation.
        return with_dtype(self.dense, self.dtype)(self.num_classes)(features), {}

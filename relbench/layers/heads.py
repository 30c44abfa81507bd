"""Output heads: features ``[N, D]`` -> ``(logits [N, K], extras)``.

Every head returns a pair so that heads with extra outputs (an SNGP head's predictive
variance, say) plug into the same models without changing their return type.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

ModuleDef = Any


class DenseHead(nn.Module):
    """A linear classification head with no extra outputs."""

    num_classes: int
    dense: ModuleDef = nn.Dense

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        del train  # a plain linear map behaves the same in training and evaluation.
        return self.dense(self.num_classes)(features), {}

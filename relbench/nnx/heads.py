"""The NNX dense head: features ``[N, D]`` -> ``(logits [N, K], {})``."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx


class DenseHead(nnx.Module):
    """A linear classification head with no extra outputs (``relbench.layers.heads``).

    ``dense`` is the NNX dense type, ``dense(in_features, out_features, rngs=rngs)``.
    """

    def __init__(
        self, in_features: int, num_classes: int, *, dense: Any = nnx.Linear, rngs: nnx.Rngs
    ):
        self.dense = dense(in_features, num_classes, rngs=rngs)

    def __call__(self, features: jax.Array) -> tuple[jax.Array, dict]:
        return self.dense(features), {}

"""NNX Monte Carlo dropout over ``relbench.layers.dropout.dropout``."""

from __future__ import annotations

import jax
from flax import nnx

from relbench.layers.dropout import dropout
from relbench.nnx.rngs import RngsArg, draw_key, fork_stream


class MCDropout(nnx.Module):
    """Dropout that samples in training *and* evaluation (MC dropout [Gal 2016]).

    It has no ``deterministic`` attribute, so ``model.eval()`` leaves it sampling: that
    is the method. Keys come from ``rngs[rng_collection]`` (forked at construction) or
    from the call's ``rngs``.
    """

    def __init__(
        self, rate: float, *, rng_collection: str = "dropout", rngs: nnx.Rngs | None = None
    ):
        self.rate, self.rng_collection = rate, rng_collection
        self.rngs = fork_stream(rngs, rng_collection)

    def __call__(self, inputs: jax.Array, *, rngs: RngsArg = None) -> jax.Array:
        if self.rate == 0.0:
            return inputs
        return dropout(inputs, self.rate, draw_key(self, rngs, self.rng_collection))

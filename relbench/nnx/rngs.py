"""Where an NNX layer's random key comes from: an ``nnx.Rngs`` stream, never a seed."""

from __future__ import annotations

import jax
from flax import nnx

from relbench.errors import UsageError

RngsArg = nnx.Rngs | nnx.RngStream | jax.Array | None


def fork_stream(rngs: nnx.Rngs | None, stream: str) -> nnx.RngStream | None:
    """The layer's own fork of ``rngs[stream]`` (or of its ``default``), or None when
    ``rngs`` has neither: the calls must then pass ``rngs``."""
    if rngs is None or (stream not in rngs and "default" not in rngs):
        return nnx.data(None)
    return rngs[stream].fork()


def draw_key(layer: nnx.Module, rngs: RngsArg, stream: str) -> jax.Array:
    """A key from the call's ``rngs`` (an ``nnx.Rngs``, a stream or a key) if given,
    else from the stream the layer forked at construction."""
    source = rngs if rngs is not None else layer.rngs
    if source is None:
        raise UsageError(
            f"{type(layer).__name__} draws from the '{stream}' RNG stream; construct it with "
            f"rngs=nnx.Rngs({stream}=...) or call it with rngs=..."
        )
    if isinstance(source, nnx.Rngs):
        return source[stream]()
    if isinstance(source, nnx.RngStream):
        return source()
    return source

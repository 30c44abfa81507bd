"""The member-major batch layout shared by every multi-member layer and model.

A model with M members (an ensemble, or M stochastic samples) runs on a batch of
``M * B`` rows laid out member-major: rows ``[m * B, (m + 1) * B)`` belong to member
``m``. Models tile their input into this layout once and split their output back into
the ``[M, B, ...]`` contract once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def tile_members(x: jax.Array, members: int) -> jax.Array:
    """``[B, ...] -> [M * B, ...]``: every member sees the whole batch."""
    return jnp.tile(x, (members,) + (1,) * (x.ndim - 1))


def split_members(x: jax.Array, members: int) -> jax.Array:
    """``[M * B, ...] -> [M, B, ...]``."""
    return x.reshape((members, x.shape[0] // members) + x.shape[1:])

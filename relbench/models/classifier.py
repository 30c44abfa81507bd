"""What every classification model shares: members in, ``[M, B, K]`` logits out."""

from __future__ import annotations

import jax

from relbench.layers.members import split_members


def member_outputs(
    logits: jax.Array, extras: dict[str, jax.Array], members: int
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Head outputs on the member-major batch -> the ``[M, B, ...]`` model contract."""
    return split_members(logits, members), {
        name: split_members(value, members) for name, value in extras.items()
    }

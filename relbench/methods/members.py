"""What the multi-member methods share: model fields, and one network's outputs read
as M members.

Every multi-member method plugs into the same models through their constructor fields:
``ensemble_size`` (the model tiles its input member-major) and the layer types
``dense``, ``conv``, ``norm`` and ``head``, all replaced by multi-member versions.
"""

from __future__ import annotations

import functools
from typing import Any

import jax

from relbench.layers.batchensemble import ensemble_batch_norm
from relbench.layers.heads import DenseHead
from relbench.models.classifier import member_outputs

ModuleDef = Any


def member_fields(ensemble_size: int, dense: ModuleDef, conv: ModuleDef) -> dict[str, Any]:
    """Model fields for M members built from the layer types ``dense`` and ``conv``:
    per-member batch norm, and a dense head made of ``dense``."""
    return {
        "ensemble_size": ensemble_size,
        "dense": dense,
        "conv": conv,
        "norm": ensemble_batch_norm(ensemble_size),
        "head": functools.partial(DenseHead, dense=dense),
    }


def unfold_members(
    outputs: tuple[jax.Array, dict[str, jax.Array]], ensemble_size: int
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """A one-member model's outputs on member-major rows -> M members:
    ``[1, M*B, K] -> [M, B, K]`` (and every extra likewise)."""
    logits, extras = outputs
    return member_outputs(logits[0], {k: v[0] for k, v in extras.items()}, ensemble_size)

"""What the multi-member methods share: their layer types, their weight-decay mask, and
one network's outputs read as M members.

Every multi-member method plugs into the same models through ``LayerTypes``:
``ensemble_size`` (the model tiles its input member-major) and the layer types
``dense``, ``conv``, ``norm`` and ``head``, all replaced by multi-member versions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from relbench.layers.batchensemble import ensemble_batch_norm
from relbench.methods.likelihoods import Likelihood
from relbench.methods.method import dense_head
from relbench.models.classifier import member_outputs
from relbench.models.layer_types import LayerTypes

ModuleDef = Any


def member_layers(
    base: LayerTypes,
    likelihood: Likelihood,
    ensemble_size: int,
    dense: ModuleDef,
    conv: ModuleDef,
) -> LayerTypes:
    """M members built from the layer types ``dense`` and ``conv``: per-member batch
    norm (the model's own norm, with members), and the likelihood's head made of ``dense``."""
    return dataclasses.replace(
        base,
        ensemble_size=ensemble_size,
        dense=dense,
        conv=conv,
        norm=ensemble_batch_norm(ensemble_size, base.norm),
        head=dense_head(likelihood, dense),
    )


def kernels(params: Any) -> Any:
    """Weight decay on the kernels of shared layers only: fast weights, per-member
    biases and normalization scales carry a member axis and are left alone."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params
    )


def unfold_members(
    outputs: tuple[jax.Array, dict[str, jax.Array]], ensemble_size: int
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """A one-member model's outputs on member-major rows -> M members:
    ``[1, M*B, K] -> [M, B, K]`` (and every extra likewise)."""
    logits, extras = outputs
    return member_outputs(logits[0], {k: v[0] for k, v in extras.items()}, ensemble_size)

"""What every classification model shares: members in, ``[M, B, K]`` logits out."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import jax

from relbench.layers.members import split_members


def member_outputs(
    logits: jax.Array, extras: dict[str, jax.Array], members: int
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Head outputs on the member-major batch -> the ``[M, B, ...]`` model contract."""
    return split_members(logits, members), {
        name: split_members(value, members) for name, value in extras.items()
    }


def bind_train(layer_type: Any, train: bool) -> Any:
    """Passes the model's ``train`` flag to a layer type that declares a ``train`` field.

    Layers that behave differently in training and evaluation without being heads (a
    spectral-normalized dense or conv layer updates its power-iteration vector only in
    training) declare ``train`` as a constructor field; plain ``nn.Dense``/``nn.Conv``
    do not, and are returned unchanged. Models bind every ``dense``/``conv`` field once.
    """
    if "train" in inspect.signature(layer_type).parameters:
        return functools.partial(layer_type, train=train)
    return layer_type

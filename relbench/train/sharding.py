"""The device mesh and how host batches become global, sharded arrays.

The mesh is a ``data`` x ``ensemble`` grid over every device of every process.
Batches are sharded on their leading axis over ``data`` (and replicated over
``ensemble``); the train state is replicated, except that the members of a method whose
variables are stacked on a leading member axis (``Method.stacked_members``, deep
ensembles) may be split over ``ensemble`` (``config.train.ensemble_axis_size``; 1 by
default, which puts every device on ``data``). Each process passes only its own rows,
and ``jax.make_array_from_process_local_data`` assembles the global array, so the same
code runs on one CPU and on a multi-host slice.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from relbench.errors import UsageError


def data_mesh(ensemble_axis_size: int = 1) -> jax.sharding.Mesh:
    """Every device on a ``data`` x ``ensemble`` grid; XLA propagates shardings (``Auto``
    axes). The ``ensemble`` axis stays inside a process, so that each process still
    reads its own rows of every batch."""
    local = jax.local_device_count()
    if ensemble_axis_size < 1 or local % ensemble_axis_size:
        raise UsageError(
            f"config.train.ensemble_axis_size {ensemble_axis_size} does not divide the "
            f"{local} devices of a process; choose a divisor of {local}"
        )
    return jax.make_mesh(
        (jax.device_count() // ensemble_axis_size, ensemble_axis_size),
        ("data", "ensemble"),
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
    )


def state_sharding(mesh: jax.sharding.Mesh, state_shape: Any, stacked_members: int) -> Any:
    """The train state's shardings: replicated, except that on an ``ensemble`` axis of
    size E > 1 every leaf with a leading axis of the ``stacked_members`` M members is
    split over it (each device holds M / E members, their optimizer state and batch
    statistics); a method without stacked members (0) cannot use such an axis."""
    size = mesh.shape["ensemble"]
    whole = replicated(mesh)
    if size == 1:
        return jax.tree.map(lambda _: whole, state_shape)
    if not stacked_members or stacked_members % size:
        raise UsageError(
            f"config.train.ensemble_axis_size {size} splits the members of a method whose "
            "variables are stacked per member (deep_ensemble) into equal groups; this "
            f"method has {stacked_members or 'no stacked'} members: set it to 1 or to a "
            "divisor of config.method.ensemble_size"
        )
    split = NamedSharding(mesh, PartitionSpec("ensemble"))
    return jax.tree.map(
        lambda leaf: split if leaf.ndim and leaf.shape[0] == stacked_members else whole,
        state_shape,
    )


def check_batch_size(global_batch_size: int, what: str) -> None:
    devices = jax.device_count()
    if global_batch_size % devices:
        raise UsageError(
            f"{what} {global_batch_size} is not divisible by the {devices} devices; "
            f"choose a multiple of {devices}"
        )


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


@functools.cache
def _transfer(sharding: NamedSharding):
    return jax.jit(lambda batch: batch, out_shardings=sharding)


def global_batch(local: Mapping[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Process-local rows -> global arrays sharded on the leading (batch) axis.

    With one process the local rows are the whole global batch. On one device, an
    identity ``jit`` moves them in its C++ dispatch path (~15 us; ``jax.device_put`` of
    the same dict takes ~130 us in Python), which matters where the host, not the
    device, bounds the step; on several devices ``device_put`` shards them.
    """
    if jax.process_count() > 1:
        return {
            name: jax.make_array_from_process_local_data(sharding, value)
            for name, value in local.items()
        }
    if sharding.num_devices == 1:
        return _transfer(sharding)(dict(local))
    return jax.device_put(dict(local), sharding)

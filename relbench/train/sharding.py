"""The device mesh and how host batches become global, sharded arrays.

The mesh is a ``data`` x ``model`` grid over every device of every process. Batches
are sharded on their leading axis over ``data`` (and replicated over ``model``); the
train state is replicated, except the leaves the method's partition rules assign to
the ``model`` axis (``Method.partition_rules``: a deep ensemble's members, say), which
``config.train.model_axis_size`` devices split (1 by default, which puts every device
on ``data``). Each process passes only its own rows, and
``jax.make_array_from_process_local_data`` assembles the global array, so the same
code runs on one CPU and on a multi-host slice.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from relbench.errors import UsageError

PartitionRules = Sequence[tuple[str, PartitionSpec]]


def data_mesh(model_axis_size: int = 1) -> jax.sharding.Mesh:
    """Every device on a ``data`` x ``model`` grid; XLA propagates shardings (``Auto``
    axes). The ``model`` axis stays inside a process, so that each process still reads
    its own rows of every batch."""
    local = jax.local_device_count()
    if model_axis_size < 1 or local % model_axis_size:
        raise UsageError(
            f"config.train.model_axis_size {model_axis_size} does not divide the "
            f"{local} devices of a process; choose a divisor of {local}"
        )
    return jax.make_mesh(
        (jax.device_count() // model_axis_size, model_axis_size),
        ("data", "model"),
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
    )


def state_path(path: Sequence[Any]) -> str:
    """A pytree path as the rules see it: ``"params/Dense_0/kernel"``."""
    return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def state_sharding(mesh: jax.sharding.Mesh, state_shape: Any, rules: PartitionRules) -> Any:
    """The train state's shardings: the first rule whose regex matches a leaf's path
    (``state_path``) and whose spec is no longer than the leaf's rank shards it; every
    other leaf is replicated. A sharded axis must divide by the mesh axes it is split
    over: a leaf that does not is a UsageError that names it."""
    whole = replicated(mesh)
    compiled = [(re.compile(pattern), spec) for pattern, spec in rules]

    def sharding(path, leaf):
        name = state_path(path)
        for pattern, spec in compiled:
            if pattern.search(name) and len(spec) <= leaf.ndim:
                for size, axes in zip(leaf.shape, spec, strict=False):
                    devices = np.prod([mesh.shape[a] for a in np.atleast_1d(axes) if a])
                    if size % devices:
                        raise UsageError(
                            f"{name} {tuple(leaf.shape)} cannot be split over {devices} "
                            f"devices of the mesh's {spec} axes; set "
                            "config.train.model_axis_size to a divisor of its size"
                        )
                return NamedSharding(mesh, spec)
        return whole

    return jax.tree_util.tree_map_with_path(sharding, state_shape)


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

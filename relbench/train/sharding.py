"""The device mesh and how host batches become global, sharded arrays.

One mesh axis, ``data``, spans every device of every process. Batches are sharded on
their leading axis over ``data``; the train state is replicated. Each process passes
only its own rows, and ``jax.make_array_from_process_local_data`` assembles the global
array, so the same code runs on one CPU and on a multi-host slice.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from relbench.errors import UsageError


def data_mesh() -> jax.sharding.Mesh:
    """All devices on one ``data`` axis; XLA propagates shardings (``Auto`` axes)."""
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


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

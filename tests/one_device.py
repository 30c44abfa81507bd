"""``on_one_device(fn, *args)``: ``fn(*args)`` in a child process on one CPU device.

The suite runs on 4 fake CPU devices (tests/conftest.py) so that tests exercise the
loop's sharding. Tests that train many configurations to check what they learn (the
learning gate, every method on every likelihood) run here instead: the sharding is
tested elsewhere, one device compiles and runs a run in about 0.6x the time on 2 cores,
and 4 devices' in-process collectives can deadlock XLA:CPU. Each test process spawns
one child, which runs its calls one after another (JAX and relbench imported once).
The arguments and the result travel by pickle; an exception raised in the child is
raised here. The session's range check of results.json (tests/conftest.py) does not
reach the child: check the returned results with ``tests.metric_ranges.out_of_range``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable
from typing import Any

import jax

_POOL: list[concurrent.futures.ProcessPoolExecutor] = []  # this process's child


def _one_device() -> None:
    jax.config.update("jax_num_cpu_devices", 1)  # before the child's backend starts


def on_one_device(fn: Callable[..., Any], *args: Any, timeout: float = 900) -> Any:
    """``fn(*args)`` (``fn`` a module-level function) in this process's one-device child."""
    if not _POOL:
        context = multiprocessing.get_context("spawn")
        _POOL.append(
            concurrent.futures.ProcessPoolExecutor(1, mp_context=context, initializer=_one_device)
        )
    future = _POOL[0].submit(fn, *args)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.process.BrokenProcessPool:
        _POOL.pop().shutdown(cancel_futures=True)  # the next call starts a new child
        raise

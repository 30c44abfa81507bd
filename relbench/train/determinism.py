"""Run-to-run determinism on accelerators: ``config.train.deterministic_ops``.

On CPU (and TPU) XLA's programs give the same bits on every run. On GPU some
kernels accumulate with atomics, whose order varies from run to run: reductions
inside scatter-add (the gradient of a gather or an embedding lookup), convolution
algorithms picked by autotuning, the gradient of max-pooling. With
``config.train.deterministic_ops = True`` relbench sets XLA's
``--xla_gpu_deterministic_ops=true`` before JAX starts its backends: XLA then picks
only deterministic algorithms and rewrites scatters and select-and-scatters into
deterministic (slower) forms, and refuses to compile what it cannot make
deterministic. Some XLA versions have no deterministic GPU kernel for the gradient of
max-pooling (select-and-scatter; google/flax#4233), so the train step is scanned for
it first and the run warns in words before XLA may stop it.

Seen on an NVIDIA H200 with jax 0.11.2: a scatter-add (``segment_sum`` and the
gradient of a gather) gave different bits on each of 3 runs without the flag and the
same bits with it; an MLP train loop and a max-pool gradient gave the same bits on 3
runs either way (the flag changes which bits: other algorithms).

Randomness needs nothing extra: keys come from ``config.seed`` with JAX's default
threefry PRNG, whose bits do not depend on the platform or on the sharding.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import jax

from relbench.errors import UsageError

FLAG_NAME = "--xla_gpu_deterministic_ops"

# Primitives (as named in a jaxpr) that some XLA versions cannot run deterministically
# on GPU.
NONDETERMINISTIC_ON_GPU = {
    "select_and_scatter_add": (
        "the gradient of max-pooling (select-and-scatter), which some XLA versions cannot "
        "run deterministically on GPU and refuse to compile with "
        "--xla_gpu_deterministic_ops; if compilation fails, pool non-overlapping windows "
        "with a reshape + max, or use average pooling"
    ),
    "select_and_scatter": "a select-and-scatter (max-pool gradient), as above",
}


def _backends_started() -> bool:
    from jax._src import xla_bridge  # private: there is no public query

    return xla_bridge.backends_are_initialized()


def configure(deterministic_ops: bool) -> None:
    """Adds ``--xla_gpu_deterministic_ops=true`` to ``XLA_FLAGS`` when asked to.

    XLA reads its flags once, when JAX starts its backends: this must run before
    anything asks JAX for devices. If that already happened, the switch can only be
    honoured where no flag is needed (CPU, TPU); on GPU it is a UsageError.
    """
    if not deterministic_ops:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if f"{FLAG_NAME}=false" in flags:
        raise UsageError(
            f"XLA_FLAGS holds {FLAG_NAME}=false but config.train.deterministic_ops is True; "
            "remove one of them"
        )
    if FLAG_NAME in flags:
        return
    if not _backends_started():
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG_NAME}=true".strip()
        return
    if jax.default_backend() == "gpu":
        raise UsageError(
            "config.train.deterministic_ops was set after JAX started on the GPU; run "
            f"through `relbench train`, or export XLA_FLAGS={FLAG_NAME}=true first"
        )


def _primitive_names(jaxpr) -> Iterator[str]:
    """Every primitive in a (closed) jaxpr, descending into jit, scan, cond, remat..."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    for eqn in jaxpr.eqns:
        yield eqn.primitive.name
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
                    yield from _primitive_names(sub)


def nondeterministic_ops(fn, *args) -> dict[str, str]:
    """The operations of ``fn(*args)`` that cannot be deterministic on GPU: ``{name: why}``."""
    names = set(_primitive_names(jax.make_jaxpr(fn)(*args)))
    return {name: why for name, why in NONDETERMINISTIC_ON_GPU.items() if name in names}


def warn_nondeterministic(fn, *args) -> None:
    """Warns once for each operation of ``fn(*args)`` with no deterministic GPU kernel."""
    for name, why in nondeterministic_ops(fn, *args).items():
        warnings.warn(
            f"config.train.deterministic_ops: the train step uses {name}, {why}",
            RuntimeWarning,
            stacklevel=2,
        )

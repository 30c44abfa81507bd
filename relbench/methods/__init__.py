"""Methods behind one registry: ``relbench.methods.make(name, **hparams) -> Method``."""

from __future__ import annotations

import inspect
from typing import Any

from relbench.methods import (
    batchensemble,
    deep_ensemble,
    deterministic,
    heteroscedastic,
    mc_dropout,
    mimo,
    rank1,
    sngp,
    variational,
)
from relbench.methods.method import Method
from relbench.registry import Registry

METHODS = Registry(
    "method",
    {
        "deterministic": deterministic.make,
        "mc_dropout": mc_dropout.make,
        "batchensemble": batchensemble.make,
        "rank1": rank1.make,
        "mimo": mimo.make,
        "deep_ensemble": deep_ensemble.make,
        "sngp": sngp.make,
        "variational": variational.make,
        "heteroscedastic": heteroscedastic.make,
    },
)
make = METHODS.make


def hyperparameters(name: str) -> dict[str, Any]:
    """The method's hyperparameters with their defaults (for building configs)."""
    parameters = inspect.signature(METHODS.get(name)).parameters
    return {n: p.default for n, p in parameters.items()}


__all__ = ["METHODS", "Method", "hyperparameters", "make"]

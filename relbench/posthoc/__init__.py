"""Post-hoc steps behind one registry: ``relbench.posthoc.make(name, **hparams)``.

``config.posthoc`` names the steps a run applies after training, in order, and
``config.posthoc_hparams.<name>`` holds each one's hyperparameters (every field of its
``make``, with the defaults). See ``relbench.posthoc.step`` for the contract.
"""

from __future__ import annotations

import inspect
from typing import Any

from relbench.posthoc import (
    calibration_maps,
    conformal_classification,
    conformal_regression,
    feature_detectors,
    laplace,
    odin,
    temperature_scaling,
)
from relbench.posthoc.step import NetworkFit, PosthocStep, apply_all, predict_with_inputs
from relbench.registry import Registry

POSTHOC_STEPS = Registry(
    "post-hoc step",
    {
        "temperature_scaling": temperature_scaling.make,
        "laplace": laplace.make,
        "odin": odin.make,
        **{
            name: getattr(module, name)
            for module, names in (
                (
                    calibration_maps,
                    ("vector_scaling", "matrix_scaling", "dirichlet_calibration")
                    + ("histogram_binning", "isotonic", "platt"),
                ),
                (
                    conformal_classification,
                    ("conformal_lac", "conformal_aps", "conformal_raps", "conformal_saps"),
                ),
                (
                    conformal_regression,
                    ("conformal_residual", "conformal_normalized", "conformal_cqr"),
                ),
                (
                    feature_detectors,
                    ("mahalanobis", "relative_mahalanobis", "ddu", "knn", "vim", "react"),
                ),
            )
            for name in names
        },
    },
    section="posthoc_hparams.{name}",
    entry_points="relbench.posthoc",
)
make = POSTHOC_STEPS.make
register = POSTHOC_STEPS.register


def hyperparameters(name: str) -> dict[str, Any]:
    """The step's hyperparameters with their defaults (for building configs)."""
    return {n: p.default for n, p in inspect.signature(POSTHOC_STEPS.get(name)).parameters.items()}


__all__ = [
    "POSTHOC_STEPS",
    "NetworkFit",
    "PosthocStep",
    "apply_all",
    "hyperparameters",
    "make",
    "predict_with_inputs",
    "register",
]

"""Methods behind one registry: ``relbench.methods.make(name, likelihood, **hparams)``.

``likelihood`` (``relbench.methods.likelihoods``) is the dataset's, picked by its task;
``hparams`` are the method's hyperparameters (``config.method`` without its name).
Every method fits every likelihood except the pairings in ``UNDEFINED``, which have no
mathematical meaning and are refused with the reason.
"""

from __future__ import annotations

from typing import Any

from relbench.errors import UsageError
from relbench.methods import (
    batchensemble,
    deep_ensemble,
    deterministic,
    heteroscedastic,
    mc_dropout,
    mimo,
    rank1,
    sngp,
    swag,
    variational,
)
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
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
        "swag": swag.make,
    },
    entry_points="relbench.methods",
)
register = METHODS.register

#: (method, likelihood) pairings without a meaning, and why: the one list of refusals.
UNDEFINED = {
    ("heteroscedastic", "gaussian"): (
        "its correlated logit noise is a model of label noise over classes; on regression "
        "data every method already fits an input-dependent Gaussian variance "
        "(use deterministic)"
    ),
}


def make(name: str, likelihood: Likelihood = CATEGORICAL, **hparams: Any) -> Method:
    """The method ``name`` for data of ``likelihood``, with its hyperparameters."""
    METHODS.get(name)  # an unknown name lists the valid ones
    if not isinstance(likelihood, Likelihood):  # e.g. a name, as methods once took
        raise UsageError(
            f"likelihood {likelihood!r} is not a likelihood object: the dataset's task "
            "picks it (relbench.methods.likelihoods.for_task); remove config.method.likelihood"
        )
    why = UNDEFINED.get((name, likelihood.name))
    if why is not None:
        raise UsageError(
            f"method '{name}' is not defined for the {likelihood.name} likelihood of this "
            f"dataset: {why}"
        )
    return METHODS.make(name, likelihood=likelihood, **hparams)


def hyperparameters(name: str) -> dict[str, Any]:
    """The method's hyperparameters with their defaults (for building configs)."""
    return METHODS.defaults(name, exclude=("likelihood",))


__all__ = ["METHODS", "UNDEFINED", "Method", "hyperparameters", "make", "register"]

"""The likelihood of the data, picked by the dataset's task and given to every method.

A method decides how the network is built and trained (layers, members, priors,
trajectories); the likelihood decides what the network's outputs mean and how they
are scored against a batch. Keeping the two apart lets every method fit every task:

=============  ================  =========================================================
task           likelihood        outputs ``[M, B, K]`` and the log-likelihood of a batch
=============  ================  =========================================================
classification ``Categorical``   logits of K classes; targets are the one-hot labels, or
                                 the batch's ``"soft_label"`` distributions where given
multilabel     ``Bernoulli``     logits of K independent labels; float targets ``[B, K]``
                                 in {0, 1} (or integer labels, taken one-hot)
regression     ``Gaussian``      means of O outputs, variances in ``extras["variance"]``;
                                 targets ``[B, O]``
=============  ================  =========================================================

``for_task(task, **settings)`` takes the settings of ``config.likelihood``
(``relbench.configs.likelihood_config``): ``quantile_coverage`` ``c`` gives the Gaussian
head a pair of quantile outputs, the ``(1 - c)/2`` and ``(1 + c)/2`` quantiles in
``extras["quantile_lower"]`` and ``["quantile_upper"]``, trained beside the Gaussian by
the pinball loss (an asymmetric-Laplace log-likelihood; ``relbench.layers.gaussian``),
which conformalized quantile regression (``conformal_cqr``) turns into intervals.

Every likelihood gives:

* ``log_prob(logits, extras, batch) -> [M, B]``: each member's log-likelihood of each
  example (the targets either shared by the members, ``[B, ...]``, or per member,
  ``[M, B, ...]`` as MIMO trains);
* ``head(loc, dense)``: the output layer it needs, built from a head ``loc`` that
  returns the location (logits or means) and the dense type ``dense`` (a Gaussian adds
  a variance branch; the others use ``loc`` itself);
* ``metrics(logits, extras, batch)``: the training metrics of the predictive
  distribution (accuracy, or the mean squared error of the mixture mean);
* ``smoothed(label_smoothing)``: the same likelihood with smoothed targets.

Where a batch carries ``"weight"`` (``[B]`` or per member ``[M, B]``: importance weights,
e.g. ``relbench.data.groups``' group reweighting), each example's log-likelihood is
multiplied by its weight, so every method trains on the weighted objective.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import optax

from relbench.errors import UsageError
from relbench.layers.gaussian import (
    QUANTILE_LOWER,
    QUANTILE_UPPER,
    GaussianHead,
    quantile_levels,
)
from relbench.metrics.predictive import multilabel_probs, predictive_log_probs
from relbench.metrics.regression import gaussian_log_prob, mixture_moments, pinball_loss

ModuleDef = Any
Batch = dict[str, jax.Array]


@runtime_checkable
class Likelihood(Protocol):
    name: ClassVar[str]

    def log_prob(self, logits: jax.Array, extras: dict, batch: Batch) -> jax.Array: ...

    def head(self, loc: ModuleDef, dense: ModuleDef) -> ModuleDef: ...

    def metrics(self, logits: jax.Array, extras: dict, batch: Batch) -> dict[str, jax.Array]: ...

    def smoothed(self, label_smoothing: float) -> Likelihood: ...


def _weighted(log_prob: jax.Array, batch: Batch) -> jax.Array:
    """``[M, B]`` log-likelihoods times the batch's example weights, where it has them."""
    return log_prob * batch["weight"] if "weight" in batch else log_prob


def _with_member_axis(targets: jax.Array, rank: int) -> jax.Array:
    """Targets shared by the members ``[B, ...]`` -> ``[1, B, ...]``; per-member targets
    (already of the outputs' ``rank``) are left as they are."""
    return targets if targets.ndim == rank else targets[None]


def _class_targets(batch: Batch, num_classes: int, label_smoothing: float) -> jax.Array:
    """``[(M,) B, K]`` targets: the batch's soft labels if it has them, else one-hot labels."""
    labels = batch["label"]
    if "soft_label" in batch:
        targets = batch["soft_label"].astype(jnp.float32)
    elif jnp.issubdtype(labels.dtype, jnp.floating):
        raise UsageError(
            "float labels for a classification likelihood; a regression dataset must "
            "declare task='regression'"
        )
    else:
        targets = jax.nn.one_hot(labels, num_classes)
    return optax.smooth_labels(targets, label_smoothing) if label_smoothing else targets


def _check_label_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing < 1.0:
        raise UsageError(f"label_smoothing must be in [0, 1), got {label_smoothing}")


@dataclasses.dataclass(frozen=True)
class Categorical:
    """One categorical over K classes per example (softmax of the logits)."""

    label_smoothing: float = 0.0
    name: ClassVar[str] = "categorical"

    def log_prob(self, logits: jax.Array, extras: dict, batch: Batch) -> jax.Array:
        del extras  # the logits are the whole prediction.
        targets = _class_targets(batch, logits.shape[-1], self.label_smoothing)
        log_prob = -optax.softmax_cross_entropy(logits, _with_member_axis(targets, logits.ndim))
        return _weighted(log_prob, batch)

    def head(self, loc: ModuleDef, dense: ModuleDef) -> ModuleDef:
        del dense  # the location head's logits are the output.
        return loc

    def metrics(self, logits: jax.Array, extras: dict, batch: Batch) -> dict[str, jax.Array]:
        del extras
        correct = jnp.argmax(predictive_log_probs(logits), -1) == batch["label"]
        return {"accuracy": correct.mean()}

    def smoothed(self, label_smoothing: float) -> Categorical:
        _check_label_smoothing(label_smoothing)
        return dataclasses.replace(self, label_smoothing=label_smoothing)


@dataclasses.dataclass(frozen=True)
class Bernoulli:
    """K independent Bernoullis per example (sigmoid of each logit): multi-label data."""

    label_smoothing: float = 0.0
    name: ClassVar[str] = "bernoulli"

    def _targets(self, batch: Batch, num_classes: int) -> jax.Array:
        labels = batch["label"]
        # Integer labels are class indices, [B] or per member [M, B] (MIMO): one-hot.
        if jnp.issubdtype(labels.dtype, jnp.integer):
            return _class_targets(batch, num_classes, self.label_smoothing)
        targets = labels.astype(jnp.float32)  # [(M,) B, K] in {0, 1}
        return (
            optax.smooth_labels(targets, self.label_smoothing) if self.label_smoothing else targets
        )

    def log_prob(self, logits: jax.Array, extras: dict, batch: Batch) -> jax.Array:
        del extras
        targets = _with_member_axis(self._targets(batch, logits.shape[-1]), logits.ndim)
        return _weighted(-optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1), batch)

    def head(self, loc: ModuleDef, dense: ModuleDef) -> ModuleDef:
        del dense
        return loc

    def metrics(self, logits: jax.Array, extras: dict, batch: Batch) -> dict[str, jax.Array]:
        del extras
        probs = multilabel_probs(logits)  # [M, B, K] -> [B, K]
        targets = self._targets({"label": batch["label"]}, logits.shape[-1])
        return {"label_accuracy": jnp.mean((probs > 0.5) == (targets > 0.5))}

    def smoothed(self, label_smoothing: float) -> Bernoulli:
        _check_label_smoothing(label_smoothing)
        return dataclasses.replace(self, label_smoothing=label_smoothing)


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """A Gaussian per output and member: means ``[M, B, O]``, ``extras["variance"]``;
    with ``quantile_coverage`` ``c`` in (0, 1), also the central ``c`` interval's
    quantiles ``extras["quantile_lower"]``, ``["quantile_upper"]``, by the pinball loss."""

    quantile_coverage: float = 0.0
    name: ClassVar[str] = "gaussian"

    def __post_init__(self):
        if not 0.0 <= self.quantile_coverage < 1.0:
            raise UsageError(
                "config.likelihood.quantile_coverage must be in (0, 1), or 0 for no "
                f"quantile head; got {self.quantile_coverage}"
            )

    @staticmethod
    def _targets(means: jax.Array, batch: Batch) -> jax.Array:
        labels = batch["label"]
        if not jnp.issubdtype(labels.dtype, jnp.floating):
            raise UsageError(
                "integer labels for the gaussian likelihood; a classification dataset must "
                "declare task='classification'"
            )
        y = labels.astype(means.dtype)
        return y if y.ndim == means.ndim else y.reshape(means.shape[1:])[None]  # [1, B, O]

    def log_prob(self, logits: jax.Array, extras: dict, batch: Batch) -> jax.Array:
        y = self._targets(logits, batch)
        log_prob = gaussian_log_prob(y, logits, extras["variance"])  # [M, B, O]
        if self.quantile_coverage:
            lower, upper = quantile_levels(self.quantile_coverage)
            log_prob = log_prob - pinball_loss(y, extras[QUANTILE_LOWER], lower)
            log_prob = log_prob - pinball_loss(y, extras[QUANTILE_UPPER], upper)
        return _weighted(jnp.sum(log_prob, axis=-1), batch)

    def head(self, loc: ModuleDef, dense: ModuleDef) -> ModuleDef:
        return functools.partial(
            GaussianHead, loc=loc, dense=dense, quantile_coverage=self.quantile_coverage
        )

    def metrics(self, logits: jax.Array, extras: dict, batch: Batch) -> dict[str, jax.Array]:
        mean, _ = mixture_moments(logits, extras["variance"])
        return {"mse": jnp.mean(jnp.square(mean - self._targets(logits, batch)[0]))}

    def smoothed(self, label_smoothing: float) -> Gaussian:
        if label_smoothing:
            raise UsageError(
                "label_smoothing applies to classes only; set it to 0 for a regression dataset"
            )
        return self


#: The likelihood of classification data, and every method's default.
CATEGORICAL = Categorical()

LIKELIHOODS: dict[str, Likelihood] = {
    "classification": CATEGORICAL,
    "multilabel": Bernoulli(),
    "regression": Gaussian(),
}


def for_task(task: str, quantile_coverage: float = 0.0) -> Likelihood:
    """The likelihood of a dataset's ``task``, with the settings of ``config.likelihood``.

    Args:
      task: the dataset's task.
      quantile_coverage: regression only: the coverage ``c`` of the quantile pair the
        Gaussian head also predicts (for ``conformal_cqr``); 0: none.
    """
    if task not in LIKELIHOODS:
        raise UsageError(f"unknown dataset task '{task}'; choose one of: {', '.join(LIKELIHOODS)}")
    if quantile_coverage and task != "regression":
        raise UsageError(
            "config.likelihood.quantile_coverage applies to regression datasets; this one "
            f"is {task}: set it to 0"
        )
    if quantile_coverage:
        return Gaussian(quantile_coverage=quantile_coverage)
    return LIKELIHOODS[task]

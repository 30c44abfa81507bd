"""The Method record: what a method changes, as data and pure functions.

A method is the only place where method knowledge lives. The loop calls its functions
and never names a method:

* ``model_kwargs`` — constructor fields for the model (layer types, dropout rate, M);
* ``loss_fn(apply_fn, variables, batch, rngs, *, step, num_train_examples)`` ->
  ``(loss, (updated_collections, metrics))``, differentiated w.r.t. ``variables["params"]``;
* ``predict_fn(apply_fn, variables, inputs, key)`` -> ``(logits [M, B, K], extras)``;
* ``mutable`` — the collections the model updates in training;
* ``rng_streams`` — the Flax RNG streams training draws from;
* ``on_epoch_start`` — an optional pure ``TrainState -> TrainState`` hook;
* ``init_inputs`` — an optional map from the loop's example input ``[1, *input_shape]``
  to what the model is initialized on (MIMO stacks M copies on the channel axis);
* ``stacked_members`` — M where every variable carries a leading axis of M independent
  members (deep ensembles), which the loop may split over the mesh's ``ensemble``
  axis; 0 otherwise.

A method's ``likelihood`` hyperparameter picks what its loss fits: ``"categorical"``
(classes; a batch's ``"soft_label"`` distribution replaces its one-hot label when
present) or ``"gaussian"`` (regression: the model gets a ``GaussianHead`` and the loss
is the Gaussian NLL of every member).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from relbench.errors import UsageError
from relbench.layers.gaussian import GaussianHead
from relbench.metrics.predictive import predictive_log_probs
from relbench.metrics.regression import gaussian_log_prob, mixture_moments

ApplyFn = Callable[..., Any]
LossFn = Callable[..., tuple[jax.Array, tuple[dict, dict]]]
PredictFn = Callable[[ApplyFn, Mapping[str, Any], jax.Array, jax.Array], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class Method:
    model_kwargs: Mapping[str, Any]
    loss_fn: LossFn
    predict_fn: PredictFn
    mutable: tuple[str, ...] = ("batch_stats",)
    rng_streams: tuple[str, ...] = ()
    on_epoch_start: Callable[[Any], Any] | None = None
    init_inputs: Callable[[jax.Array], jax.Array] | None = None
    stacked_members: int = 0


def rng_dict(key: jax.Array, streams: Sequence[str]) -> dict[str, jax.Array]:
    """One independent key per named stream, stable under adding or reordering streams."""
    return {name: jax.random.fold_in(key, zlib.crc32(name.encode())) for name in streams}


LIKELIHOODS = ("categorical", "gaussian")


def classification_targets(batch, num_classes: int, label_smoothing: float) -> jax.Array:
    """``[B, K]`` targets: the batch's soft labels if it has them, else one-hot labels."""
    if jnp.issubdtype(batch["label"].dtype, jnp.floating):
        raise UsageError(
            "float labels with a categorical likelihood; for a regression dataset set the "
            "method's likelihood='gaussian'"
        )
    if "soft_label" in batch:
        targets = batch["soft_label"].astype(jnp.float32)
    else:
        targets = jax.nn.one_hot(batch["label"], num_classes)
    return optax.smooth_labels(targets, label_smoothing)


def cross_entropy_loss(
    mutable: Sequence[str], label_smoothing: float = 0.0, link: str = "softmax"
) -> LossFn:
    """Cross-entropy of every member's logits, averaged over members and batch.

    ``link="softmax"``: one categorical over the K classes; ``link="sigmoid"``: K
    independent Bernoullis (summed over classes), the multi-label likelihood.
    """

    def loss_fn(apply_fn, variables, batch, rngs, *, step, num_train_examples):
        del step, num_train_examples  # a plain likelihood needs neither.
        (logits, _), updates = apply_fn(
            variables, batch["input"], train=True, rngs=rngs, mutable=list(mutable)
        )
        # [B, K], shared by all members
        targets = classification_targets(batch, logits.shape[-1], label_smoothing)
        if link == "sigmoid":
            loss = optax.sigmoid_binary_cross_entropy(logits, targets[None]).sum(-1).mean()
        else:
            loss = optax.softmax_cross_entropy(logits, targets[None]).mean()
        correct = jnp.argmax(predictive_log_probs(logits), -1) == batch["label"]
        return loss, (dict(updates), {"accuracy": correct.mean()})

    return loss_fn


def gaussian_nll_loss(mutable: Sequence[str]) -> LossFn:
    """Gaussian NLL of every member's (mean, variance), averaged over members and batch.

    The model returns means ``[M, B, O]`` and ``extras["variance"]`` ``[M, B, O]``; the
    batch's ``"label"`` holds the ``[B, O]`` float targets.
    """

    def loss_fn(apply_fn, variables, batch, rngs, *, step, num_train_examples):
        del step, num_train_examples  # a plain likelihood needs neither.
        (means, extras), updates = apply_fn(
            variables, batch["input"], train=True, rngs=rngs, mutable=list(mutable)
        )
        if not jnp.issubdtype(batch["label"].dtype, jnp.floating):
            raise UsageError(
                "integer labels with a gaussian likelihood; for a classification dataset set "
                "the method's likelihood='categorical'"
            )
        variances = extras["variance"]
        y = batch["label"].reshape(means.shape[1:]).astype(means.dtype)  # [B, O]
        loss = -jnp.sum(gaussian_log_prob(y[None], means, variances), axis=-1).mean()
        mean, _ = mixture_moments(means, variances)
        return loss, (dict(updates), {"mse": jnp.mean(jnp.square(mean - y))})

    return loss_fn


def likelihood_parts(
    likelihood: str, mutable: Sequence[str], label_smoothing: float = 0.0
) -> tuple[dict[str, Any], LossFn]:
    """The model kwargs and the loss a method needs to fit ``likelihood``."""
    if likelihood == "categorical":
        return {}, cross_entropy_loss(mutable, label_smoothing)
    if likelihood == "gaussian":
        if label_smoothing:
            raise UsageError("label_smoothing applies to classes only; set it to 0 for gaussian")
        return {"head": GaussianHead}, gaussian_nll_loss(mutable)
    raise UsageError(f"unknown likelihood '{likelihood}'; choose one of: {', '.join(LIKELIHOODS)}")


def single_pass_predict(apply_fn, variables, inputs, key):
    """One deterministic evaluation pass (the model's own M members, if any)."""
    del key  # nothing is random at test time.
    return apply_fn(variables, inputs, train=False)


def sampled_predict(num_samples: int, streams: Sequence[str]) -> PredictFn:
    """``num_samples`` stochastic evaluation passes stacked on the member axis."""

    def predict_fn(apply_fn, variables, inputs, key):
        def one_pass(sample_key):
            return apply_fn(variables, inputs, train=False, rngs=rng_dict(sample_key, streams))

        logits, extras = jax.vmap(one_pass)(jax.random.split(key, num_samples))
        # [S, M, B, K] -> [S*M, B, K]: every sample of every member is a member.
        merge = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
        return merge(logits), jax.tree.map(merge, extras)

    return predict_fn

"""The Method record: what a method changes, as data and pure functions.

A method is the only place where method knowledge lives. The loop calls its functions
and never names a method:

* ``model_kwargs`` — constructor fields for the model (layer types, dropout rate, M);
* ``loss_fn(apply_fn, variables, batch, rngs, *, step, num_train_examples)`` ->
  ``(loss, (updated_collections, metrics))``, differentiated w.r.t. ``variables["params"]``;
* ``predict_fn(apply_fn, variables, inputs, key)`` -> ``(logits [M, B, K], extras)``;
* ``mutable`` — the collections the model updates in training;
* ``rng_streams`` — the Flax RNG streams training draws from;
* ``on_epoch_start`` — an optional pure ``TrainState -> TrainState`` hook.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from relbench.metrics.predictive import predictive_log_probs

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


def rng_dict(key: jax.Array, streams: Sequence[str]) -> dict[str, jax.Array]:
    """One independent key per named stream, stable under adding or reordering streams."""
    return {name: jax.random.fold_in(key, zlib.crc32(name.encode())) for name in streams}


def cross_entropy_loss(mutable: Sequence[str], label_smoothing: float = 0.0) -> LossFn:
    """Softmax cross-entropy of every member's logits, averaged over members and batch."""

    def loss_fn(apply_fn, variables, batch, rngs, *, step, num_train_examples):
        del step, num_train_examples  # a plain likelihood needs neither.
        (logits, _), updates = apply_fn(
            variables, batch["input"], train=True, rngs=rngs, mutable=list(mutable)
        )
        num_classes = logits.shape[-1]
        targets = optax.smooth_labels(
            jax.nn.one_hot(batch["label"], num_classes), label_smoothing
        )  # [B, K], shared by all members
        if "mixup_weight" in batch:  # mixup (relbench.data.augment) mixes the targets too
            weight = batch["mixup_weight"][:, None]
            partner = optax.smooth_labels(
                jax.nn.one_hot(batch["mixup_label"], num_classes), label_smoothing
            )
            targets = weight * targets + (1 - weight) * partner
        loss = optax.softmax_cross_entropy(logits, targets[None]).mean()
        correct = jnp.argmax(predictive_log_probs(logits), -1) == batch["label"]
        return loss, (dict(updates), {"accuracy": correct.mean()})

    return loss_fn


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

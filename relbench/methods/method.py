"""The Method record: what a method changes, as data and pure functions.

A method is the only place where method knowledge lives. ``make(likelihood, **hparams)``
in ``relbench/methods/<name>.py`` returns a ``Method``, and the loop calls its
functions at fixed points of a run without ever naming a method:

* ``layers``: ``LayerTypes -> LayerTypes``, the model's layer types and member count
  under this method (applied when the model is built);
* ``loss_fn(apply_fn, variables, batch, rngs, *, step, num_train_examples) -> (loss,
  (collections, metrics))``, differentiated w.r.t. ``variables["params"]`` in every step;
* ``optimizer``: ``(tx, total_steps) -> tx``, wraps the run's optax optimizer; trajectory
  methods (SWA, SWAG, EMA, snapshot ensembles) keep their moments in the wrapper's state
  and schedule what they collect by the run's length;
* ``on_epoch_start``: ``TrainState -> TrainState`` at the start of every epoch (jitted);
* ``after_training(apply_fn, state, data, key) -> state``: once after the last step and
  before evaluation, its result checkpointed; ``data(split)`` yields global batches of
  ``"train"`` or of an evaluation set, and the state it returns has the structure of
  the one it got;
* ``predict_fn(apply_fn, state, inputs, key) -> (logits [M, B, K], extras)``: it sees the
  whole train state (jitted, once per evaluation batch);
* ``mutable``: the collections the model updates in training;
* ``rng_streams``: the Flax RNG streams training draws from;
* ``init_inputs``: ``[1, *input_shape] -> model input`` for initialization;
* ``init_fitted``: ``variables -> pytree``, the state's ``fitted`` slot that
  ``after_training`` fills (its structure is fixed at init);
* ``partition_rules``: ``((regex, PartitionSpec), ...)`` over state paths such as
  ``"params/Dense_0/kernel"``: the leaves the mesh's ``model`` axis splits (the first
  matching rule whose spec is no longer than the leaf's rank); all else is replicated;
* ``decay_mask``: ``params -> bool tree``, the leaves weight decay applies to (None: the
  optimizer's usual choice, weight matrices).

The likelihood (``relbench.methods.likelihoods``) comes from the dataset's task, so a
method's loss and head fit classification, multi-label and regression data alike.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax
import optax
from jax.sharding import PartitionSpec

from relbench.layers.heads import DenseHead
from relbench.methods.likelihoods import Likelihood
from relbench.models.layer_types import LayerTypes

ModuleDef = Any
ApplyFn = Callable[..., Any]
Variables = Mapping[str, Any]
Outputs = tuple[jax.Array, dict[str, jax.Array]]


class LossFn(Protocol):
    def __call__(
        self,
        apply_fn: ApplyFn,
        variables: Variables,
        batch: Mapping[str, jax.Array],
        rngs: Mapping[str, jax.Array],
        *,
        step: jax.Array,
        num_train_examples: int,
    ) -> tuple[jax.Array, tuple[dict, dict]]: ...


class PredictFn(Protocol):
    def __call__(
        self, apply_fn: ApplyFn, state: Any, inputs: jax.Array, key: jax.Array
    ) -> Outputs: ...


class SplitData(Protocol):
    """``data(split)``: global, sharded batches of a named split.

    ``"train"`` yields training batches (augmented as in training, in a fixed order of
    their own) for as long as they are asked for; an evaluation set's name yields that
    set once, its last batch padded and marked by ``batch["mask"]``.
    """

    def __call__(self, split: str) -> Iterator[dict[str, jax.Array]]: ...


class LayersFn(Protocol):
    def __call__(self, layers: LayerTypes) -> LayerTypes: ...


class OptimizerWrapper(Protocol):
    def __call__(
        self, tx: optax.GradientTransformation, total_steps: int
    ) -> optax.GradientTransformation: ...


class AfterTraining(Protocol):
    def __call__(self, apply_fn: ApplyFn, state: Any, data: SplitData, key: jax.Array) -> Any: ...


def keep_layers(layers: LayerTypes) -> LayerTypes:
    """The model's own layer types."""
    return layers


def keep_optimizer(
    tx: optax.GradientTransformation, total_steps: int
) -> optax.GradientTransformation:
    """The run's optimizer, unwrapped."""
    del total_steps  # nothing to schedule
    return tx


@dataclasses.dataclass(frozen=True)
class Method:
    loss_fn: LossFn
    predict_fn: PredictFn
    layers: LayersFn = keep_layers
    mutable: tuple[str, ...] = ("batch_stats",)
    rng_streams: tuple[str, ...] = ("dropout",)
    optimizer: OptimizerWrapper = keep_optimizer
    on_epoch_start: Callable[[Any], Any] | None = None
    after_training: AfterTraining | None = None
    init_inputs: Callable[[jax.Array], jax.Array] | None = None
    init_fitted: Callable[[Variables], Any] | None = None
    partition_rules: tuple[tuple[str, PartitionSpec], ...] = ()
    decay_mask: Callable[[Any], Any] | None = None  # None: the optimizer's (matrices)


def after_training_sequence(*steps: AfterTraining | None) -> AfterTraining | None:
    """The after-training steps that are not None, run in order (None if none is)."""
    chosen = [step for step in steps if step is not None]
    if not chosen:
        return None

    def after_training(apply_fn, state, data, key):
        for index, step in enumerate(chosen):
            state = step(apply_fn, state, data, jax.random.fold_in(key, index))
        return state

    return after_training


def dense_head(likelihood: Likelihood, dense: ModuleDef) -> ModuleDef:
    """The likelihood's head made of the dense layer type ``dense``: a dense head of
    logits for classes, and a dense mean beside a dense variance for a Gaussian."""
    return likelihood.head(functools.partial(DenseHead, dense=dense), dense)


def rng_dict(key: jax.Array, streams: Sequence[str]) -> dict[str, jax.Array]:
    """One independent key per named stream, stable under adding or reordering streams."""
    return {name: jax.random.fold_in(key, zlib.crc32(name.encode())) for name in streams}


def likelihood_loss(likelihood: Likelihood, mutable: Sequence[str]) -> LossFn:
    """The negative log-likelihood of every member, averaged over members and batch."""

    def loss_fn(apply_fn, variables, batch, rngs, *, step, num_train_examples):
        del step, num_train_examples  # a plain likelihood needs neither.
        (logits, extras), updates = apply_fn(
            variables, batch["input"], train=True, rngs=rngs, mutable=list(mutable)
        )
        loss = -likelihood.log_prob(logits, extras, batch).mean()  # [M, B] -> []
        return loss, (dict(updates), likelihood.metrics(logits, extras, batch))

    return loss_fn


def single_pass_predict(apply_fn, state, inputs, key):
    """One deterministic evaluation pass (the model's own M members, if any)."""
    del key  # nothing is random at test time.
    return apply_fn(state.variables, inputs, train=False)


def sampled_predict(num_samples: int, streams: Sequence[str]) -> PredictFn:
    """``num_samples`` stochastic evaluation passes stacked on the member axis."""

    def predict_fn(apply_fn, state, inputs, key):
        def one_pass(sample_key):
            rngs = rng_dict(sample_key, streams)
            return apply_fn(state.variables, inputs, train=False, rngs=rngs)

        logits, extras = jax.vmap(one_pass)(jax.random.split(key, num_samples))
        # [S, M, B, K] -> [S*M, B, K]: every sample of every member is a member.
        merge = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
        return merge(logits), jax.tree.map(merge, extras)

    return predict_fn

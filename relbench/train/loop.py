"""The one train/eval loop: every method, every model, every dataset.

``train_and_evaluate(config, workdir)`` builds the dataset, its likelihood, the method,
the model and the optimizer from their sub-configs, then runs one jitted, sharded
train step per batch, the method's after-training step, the post-hoc steps, and
evaluates every evaluation set. The loop never names a method: it calls the method's
functions at fixed points (``relbench.methods.method``).

A run's phases, each resumable: training (checkpointed every
``checkpoint_every_steps``), after training (the method's ``after_training``, then
precise batch-norm statistics: ``stages/after_training``), post-hoc fitting
(``stages/posthoc``), evaluation (``results.json``). A run killed in any phase resumes
from the last one it finished, and ends bitwise equal to a run never stopped.

Keys: ``config.seed`` -> root key -> (init, train, eval) keys. The step's key is
``fold_in(train_key, step)``, computed inside the jitted step, so a resumed run draws
the same numbers; random arrays are drawn in the global view, so the draws do not
depend on the number of devices. The after-training key is derived from the train
key, the post-hoc fit's from the eval key.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from relbench import data as data_lib
from relbench import methods as methods_lib
from relbench import metrics as metrics_lib
from relbench import models as models_lib
from relbench import posthoc as posthoc_lib
from relbench.errors import UsageError
from relbench.layers import mixed_precision
from relbench.methods import likelihoods
from relbench.methods.method import AfterTraining, after_training_sequence, rng_dict
from relbench.methods.precise_bn import BATCH_STATS, precise_batch_norm
from relbench.registry import check_kwargs
from relbench.train import determinism, evaluation, optimizers, sharding
from relbench.train import workdir as workdir_lib
from relbench.train.checkpoints import Checkpoints, Stages
from relbench.train.evaluation import EvaluationSettings
from relbench.train.init_from import InitFrom, frozen_optimizer, start_from_checkpoint
from relbench.train.probes import run_probes
from relbench.train.state import TrainState
from relbench.train.writers import PredictionWriter, RunWriter, progress_bar


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """``config.train``: how long to train, how often to log and checkpoint, and what
    happens between the last step and evaluation."""

    global_batch_size: int = 128
    num_epochs: float = 10.0
    log_every_steps: int = 50
    checkpoint_every_steps: int = 500
    max_checkpoints_to_keep: int = 2
    eval_batch_size: int = 512
    deterministic_ops: bool = False  # GPU: XLA's deterministic kernels (train/determinism.py)
    data_threads: int = 0  # grain threads reading ahead; 0: read each batch when needed
    model_axis_size: int = 1  # devices that split what the method's partition rules name
    precise_batch_norm: bool = True  # batch norms get population statistics after training
    refit_batches: int = 100  # training batches after-training steps read (<= one epoch)
    compute_dtype: str = "float32"  # or "bfloat16": parameters stay float32 (mixed precision)


@dataclasses.dataclass(frozen=True)
class PosthocEntry:
    """A post-hoc step of the run, with the name and hyperparameters it was made from."""

    name: str
    hparams: dict
    step: posthoc_lib.PosthocStep


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything built from a config, before any training happens."""

    dataset: data_lib.Dataset
    likelihood: likelihoods.Likelihood
    method: methods_lib.Method
    model: Any
    optimizer: optax.GradientTransformation
    settings: LoopSettings
    total_steps: int
    seed: int
    evaluation: EvaluationSettings = EvaluationSettings()
    posthoc: tuple[PosthocEntry, ...] = ()
    method_config: dict = dataclasses.field(default_factory=dict)  # name and hparams
    init_from: InitFrom = InitFrom()


def build_model(
    config_model: ml_collections.ConfigDict, method, num_classes: int, compute_dtype="float32"
):
    """The model of ``config.model`` (widths and depths) with the method's layer types,
    computing in ``compute_dtype`` (``relbench.layers.mixed_precision``)."""
    kwargs = dict(config_model)
    name = kwargs.pop("name")
    reserved = sorted(set(kwargs) & {"layers", "num_classes"})
    if reserved:
        raise UsageError(
            f"config.model.{reserved[0]} is set by the method and the dataset; remove it "
            "from config.model (set it through config.method or config.dataset)"
        )
    layers = method.layers(models_lib.default_layers(name))
    layers = dataclasses.replace(layers, dtype=mixed_precision.compute_dtype(compute_dtype))
    return models_lib.make(name, **kwargs, layers=layers, num_classes=num_classes)


def fit_sets(dataset) -> dict[str, data_lib.EvalSet]:
    """The sets a post-hoc step can fit on: the in-distribution evaluation sets, and
    ``"train"``, every training example once, unaugmented (feature-space detectors)."""
    sets = {n: s for n, s in dataset.eval_sets.items() if not s.is_ood}
    return {**sets, "train": data_lib.EvalSet(dataset.train)}


def build_posthoc(config: ml_collections.ConfigDict, dataset) -> tuple[PosthocEntry, ...]:
    """``config.posthoc``'s steps, each from its ``config.posthoc_hparams.<name>``."""
    if "posthoc" not in config:  # a config from before post-hoc steps existed
        return ()
    entries = []
    for name in config.posthoc:
        posthoc_lib.POSTHOC_STEPS.get(name)  # an unknown name lists the valid ones
        if name not in config.posthoc_hparams:
            raise UsageError(
                f"config.posthoc names '{name}' but config.posthoc_hparams.{name} is "
                "missing; build the config's posthoc_hparams with "
                "relbench.configs.posthoc_hparams_config()"
            )
        hparams = dict(config.posthoc_hparams[name])
        step = posthoc_lib.make(name, **hparams)
        if dataset.task not in step.tasks:
            raise UsageError(
                f"post-hoc step '{name}' is defined for {', '.join(step.tasks)} datasets, "
                f"this one is {dataset.task}; remove it from config.posthoc"
            )
        if step.network is not None and entries:
            raise UsageError(
                f"post-hoc step '{name}' reruns the network, so it comes first in "
                "config.posthoc; move it before the other steps"
            )
        sets = fit_sets(dataset)
        if step.split not in sets:
            raise UsageError(
                f"post-hoc step '{name}' fits on '{step.split}', which is not an "
                f"in-distribution set of this dataset; set "
                f"config.posthoc_hparams.{name}.split to one of: {', '.join(sets)}"
            )
        entries.append(PosthocEntry(name, hparams, step))
    return tuple(entries)


def build(config: ml_collections.ConfigDict) -> Experiment:
    """Builds the experiment; every unknown name or key is a UsageError that names it."""
    check_kwargs(LoopSettings, config.train, "config.train", "the loop")
    settings = LoopSettings(**config.train)
    dataset = data_lib.make(**config.dataset)
    # A config without a likelihood section takes the task's likelihood as it is.
    likelihood_kwargs = dict(config.likelihood) if "likelihood" in config else {}
    check_kwargs(likelihoods.for_task, likelihood_kwargs, "config.likelihood", "the likelihood")
    likelihood = likelihoods.for_task(dataset.task, **likelihood_kwargs)
    if "likelihood" in config.method:
        raise UsageError(
            "config.method.likelihood is not a hyperparameter: the dataset's task picks "
            "the likelihood; remove it"
        )
    method = methods_lib.make(likelihood=likelihood, **config.method)
    model = build_model(config.model, method, dataset.num_classes, settings.compute_dtype)
    total_steps = math.ceil(settings.num_epochs * len(dataset.train) / settings.global_batch_size)
    init_from = dict(config.init_from) if "init_from" in config else {}  # adaptation
    check_kwargs(InitFrom, init_from, "config.init_from", "init_from")
    init_from = InitFrom(**init_from)
    optimizer = method.optimizer(
        frozen_optimizer(
            optimizers.make(
                total_steps=total_steps, decay_mask=method.decay_mask, **config.optimizer
            ),
            init_from.freeze,
        ),
        total_steps,
    )
    # A config without an evaluation suite evaluates the dataset's own sets only.
    evaluation_kwargs = dict(config.evaluation) if "evaluation" in config else {}
    check_kwargs(EvaluationSettings, evaluation_kwargs, "config.evaluation", "the loop")
    return Experiment(
        dataset,
        likelihood,
        method,
        model,
        optimizer,
        settings,
        total_steps,
        config.seed,
        EvaluationSettings(**evaluation_kwargs),
        build_posthoc(config, dataset),
        config.method.to_dict(),
        init_from,
    )


def named_key(key: jax.Array, name: str) -> jax.Array:
    return jax.random.fold_in(key, zlib.crc32(name.encode()))


def make_train_step(exp: Experiment):
    """The pure train step ``(state, batch, train_key) -> (state, metrics)``."""
    method, model = exp.method, exp.model
    num_train_examples = len(exp.dataset.train)

    def train_step(state: TrainState, batch, train_key):
        key = jax.random.fold_in(train_key, state.step)
        rngs = rng_dict(key, method.rng_streams)

        def objective(params):
            variables = {"params": params, **state.collections}
            return method.loss_fn(
                model.apply,
                variables,
                batch,
                rngs,
                step=state.step,
                num_train_examples=num_train_examples,
            )

        (loss, (updates, metrics)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        param_updates, opt_state = exp.optimizer.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, param_updates),
            opt_state=opt_state,
            collections={**state.collections, **updates},
        )
        return new_state, {"loss": loss, **metrics}

    return train_step


def summing_metrics(train_step):
    """``(state, sums, batch, key) -> (state, sums + metrics)``, and ``zeros(state, batch,
    key)``, the sums before the first step: the step adds its metrics to running sums on
    the device, so logging fetches one small pytree per log interval instead of every
    step's metrics. Both call the step through one inner ``jit``, so it is traced once."""
    train_step = jax.jit(train_step)

    def step(state: TrainState, sums, batch, train_key):
        state, metrics = train_step(state, batch, train_key)
        return state, jax.tree.map(jnp.add, sums, metrics)

    def zeros(state: TrainState, batch, train_key):
        _, metrics = jax.eval_shape(train_step, state, batch, train_key)
        return jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics)

    return step, zeros


def network_forward(exp: Experiment, state, key: jax.Array):
    """``forward(params, inputs) -> logits [M, B, K]``: the method's prediction with
    other parameters (what a post-hoc step over the network reruns)."""

    def forward(params, inputs):
        return exp.method.predict_fn(exp.model.apply, state.replace(params=params), inputs, key)[0]

    return forward


def apply_posthoc(
    exp: Experiment, outputs, fitted: Sequence[Any], state=None, inputs=None, key=None
):
    """The model's outputs through the run's post-hoc steps (the first ``len(fitted)``);
    ``state``, the batch's ``inputs`` and ``key`` for a step that reruns the network."""
    network = None if state is None else (state.params, network_forward(exp, state, key), inputs)
    steps = [e.step for e in exp.posthoc[: len(fitted)]]
    return posthoc_lib.apply_all(steps, outputs, fitted, network)


def predict_outputs(exp: Experiment, state: TrainState, inputs, key):
    """The method's prediction, its extras joined by what post-hoc steps compute from
    the model and the inputs (``PosthocStep.input_extras``)."""

    def forward(x):
        return exp.method.predict_fn(exp.model.apply, state, x, key)

    return posthoc_lib.predict_with_inputs([e.step for e in exp.posthoc], forward, inputs)


def make_eval_step(exp: Experiment, mesh: jax.sharding.Mesh, state_sharding):
    """The eval step ``(state, batch, key, is_ood, fitted) -> {view: statistics}``.

    It is two jitted programs: the method's prediction (the model's forward, compiled
    once for every evaluation set), and the reduction of its outputs to the summable
    statistics of the in-distribution or the OOD metric suite (each compiled once, and
    cheap). With post-hoc steps (``fitted``: their parameters) the reduction reports two
    views of the same forward pass: ``""`` after the steps and ``"raw/"`` before them.
    """
    replicated = sharding.replicated(mesh)

    def predict(state: TrainState, inputs, key):
        return predict_outputs(exp, state, inputs, key)

    def statistics(outputs, labels, fitted, state, inputs, key, *, is_ood: bool):
        suite = metrics_lib.eval_suite(exp.dataset.task, is_ood)

        def view(view_outputs):
            logits, extras = view_outputs
            predictions = metrics_lib.Predictions(
                logits=logits,
                log_probs=metrics_lib.task_log_probs(exp.dataset.task, logits),
                labels=labels["label"],
                mask=labels["mask"],
                extras=extras,
                soft_labels=labels.get("soft_label"),
                groups=labels.get("group"),
            )
            return metrics_lib.batch_statistics(suite, predictions)

        if fitted is None:
            return {"": view(outputs)}
        final = apply_posthoc(exp, outputs, fitted, state, inputs, key)
        return {"": view(final), "raw/": view(outputs)}

    predict = jax.jit(
        predict, in_shardings=(state_sharding, sharding.batch_sharded(mesh), replicated)
    )
    reduce = {
        is_ood: jax.jit(functools.partial(statistics, is_ood=is_ood), out_shardings=replicated)
        for is_ood in (False, True)
    }

    def reduce_outputs(outputs, batch, is_ood: bool, fitted=None, state=None, key=None):
        labels = {name: value for name, value in batch.items() if name != "input"}
        # Only a post-hoc step that reruns the network reads the state and the inputs.
        reads_network = fitted is not None and any(e.step.network for e in exp.posthoc)
        if not reads_network:
            state, key = None, None
        inputs = batch["input"] if reads_network else None
        return reduce[is_ood](outputs, labels, fitted, state, inputs, key)

    def eval_step(state: TrainState, batch, key, is_ood: bool, fitted=None):
        # One collective program in flight at a time (see set_outputs); the caller
        # fetches every batch's statistics anyway, so this costs no overlap.
        outputs = jax.block_until_ready(predict(state, batch["input"], key))
        return reduce_outputs(outputs, batch, is_ood, fitted, state, key)

    eval_step.predict = predict  # the post-hoc fit reuses the compiled forward pass
    eval_step.reduce = reduce_outputs  # evaluate keeps the outputs between the two
    return eval_step


def init_state(exp: Experiment, init_key: jax.Array) -> TrainState:
    """Initial parameters and collections (called under ``jit``)."""
    dummy = jnp.zeros((1, *exp.dataset.input_shape), jnp.float32)
    if exp.method.init_inputs is not None:
        dummy = exp.method.init_inputs(dummy)
    rngs = {"params": init_key, **rng_dict(init_key, exp.method.rng_streams)}
    variables = dict(exp.model.init(rngs, dummy, train=False))
    fitted = None if exp.method.init_fitted is None else exp.method.init_fitted(variables)
    params = variables.pop("params")
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=exp.optimizer.init(params),
        collections=variables,
        fitted=fitted,
    )


def split_data(exp: Experiment, mesh: jax.sharding.Mesh):
    """``data(split)`` for after-training steps: global, sharded batches of a split.

    ``"train"``: the first ``refit_batches`` batches of the training stream (at most one
    epoch's worth), augmented as in training; an evaluation set's name: that set once,
    its last batch padded and masked.
    """
    batch_sharding = sharding.batch_sharded(mesh)
    settings, dataset = exp.settings, exp.dataset

    def data(split: str) -> Iterator[dict[str, jax.Array]]:
        if split == "train":
            batches = data_lib.TrainBatches(
                dataset.train,
                settings.global_batch_size,
                seed=exp.seed,
                num_classes=dataset.label_classes,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                augment=dataset.train_augment,
                num_labels=dataset.num_labels,
            )
            epoch = math.ceil(len(dataset.train) / settings.global_batch_size)
            for step in range(min(settings.refit_batches, epoch)):
                yield sharding.global_batch(batches(step), batch_sharding)
            return
        if split not in dataset.eval_sets:
            raise UsageError(
                f"no split '{split}' in this dataset; choose train or one of: "
                f"{', '.join(dataset.eval_sets)}"
            )
        eval_set = dataset.eval_sets[split]
        for local in _eval_batches(exp, eval_set):
            yield sharding.global_batch(local, batch_sharding)

    return data


def _eval_batches(exp: Experiment, eval_set: data_lib.EvalSet):
    return data_lib.eval_batches(
        eval_set.source,
        exp.settings.eval_batch_size,
        None if eval_set.is_ood else exp.dataset.label_classes,
        jax.process_index(),
        jax.process_count(),
        num_labels=None if eval_set.is_ood else exp.dataset.num_labels,
    )


def set_outputs(exp: Experiment, state, predict, split: str, key: jax.Array, mesh):
    """The model's outputs and targets on every example of an evaluation set, in dataset
    order, replicated on every device: ``((logits [M, N, K], extras), targets)``."""
    replicate = jax.jit(lambda tree: tree, out_shardings=sharding.replicated(mesh))
    batch_sharding = sharding.batch_sharded(mesh)
    eval_set = fit_sets(exp.dataset)[split]
    outputs, targets = [], []
    for index, local in enumerate(_eval_batches(exp, eval_set)):
        batch = sharding.global_batch(local, batch_sharding)
        # [M, B, ...] outputs and [B, ...] targets, all replicated. One collective program
        # in flight at a time: on CPU devices two of them can hold the thread pool between
        # them and deadlock in their all-gathers (seen here: predict's and replicate's).
        predicted = jax.block_until_ready(
            predict(state, batch["input"], jax.random.fold_in(key, index))
        )
        outputs.append(jax.block_until_ready(replicate(predicted)))
        labels = {k: v for k, v in batch.items() if k not in ("input", "mask")}
        targets.append(jax.block_until_ready(replicate(labels)))
    n = len(eval_set.source)  # padding rows come last: cut them off
    logits = jnp.concatenate([o[0] for o in outputs], axis=1)[:, :n]
    extras = {k: jnp.concatenate([o[1][k] for o in outputs], axis=1)[:, :n] for k in outputs[0][1]}
    return (logits, extras), {k: jnp.concatenate([t[k] for t in targets])[:n] for k in targets[0]}


def fit_posthoc(exp: Experiment, state, predict, eval_key: jax.Array, mesh) -> list[Any]:
    """Fits every post-hoc step, in order, on its predecessors' outputs of its split.

    Each split is predicted once (with a key of its own, apart from the evaluation's),
    whatever the number of steps that fit on it.
    """
    fitted, cache, done = [], {}, 0  # done: the steps already inside predict
    replicated = sharding.replicated(mesh)
    for entry in exp.posthoc:
        split = entry.step.split
        if entry.step.network is not None:  # the first step (build_posthoc checks)
            key = named_key(eval_key, split)
            fitted.append(fit_network(exp, state, entry.step.network, split, key, mesh))
            predict, done = _after_network_step(exp, predict, fitted[0]), 1
            continue
        if split not in cache:
            cache[split] = set_outputs(exp, state, predict, split, named_key(eval_key, split), mesh)
        outputs, targets = cache[split]
        steps = [e.step for e in exp.posthoc[done : len(fitted)]]
        outputs = posthoc_lib.apply_all(steps, outputs, fitted[done:])
        fitted.append(jax.jit(entry.step.fit, out_shardings=replicated)(outputs, targets))
    return fitted


def _after_network_step(exp: Experiment, predict, network_fitted):
    """``predict`` followed by the first post-hoc step (one over the network), jitted."""

    def after(state, inputs, key, network_fitted):
        outputs = predict(state, inputs, key)
        return apply_posthoc(exp, outputs, [network_fitted], state, inputs, key)

    after = jax.jit(after)
    return lambda state, inputs, key: after(state, inputs, key, network_fitted)


def fit_network(exp: Experiment, state, network: posthoc_lib.NetworkFit, split, key, mesh):
    """A post-hoc step over the network's parameters, streamed over ``split``'s global,
    sharded batches (each reduced over the global batch by its jitted ``accumulate``)."""
    replicated = sharding.replicated(mesh)

    def accumulate(statistics, state, batch):
        return network.accumulate(statistics, state.params, network_forward(exp, state, key), batch)

    accumulate = jax.jit(accumulate, out_shardings=replicated)
    statistics = None
    for batch in split_data(exp, mesh)(split):
        if statistics is None:  # zeros, shaped from the first batch
            init = jax.jit(
                lambda s, b: network.init(s.params, network_forward(exp, s, key), b),
                out_shardings=replicated,
            )
            statistics = init(state, batch)
        # One collective program in flight at a time (see set_outputs).
        statistics = jax.block_until_ready(accumulate(statistics, state, batch))
    return jax.jit(network.finish, out_shardings=replicated)(statistics, state.params)


def evaluate(exp: Experiment, state, eval_step, eval_key, mesh, fitted=None, keep=None):
    """Every evaluation set, each example counted once -> ``(results, curves)``.

    ``results`` is ``{set: {metric: value}}`` plus the OOD mixtures and shift-family
    aggregates of ``evaluation.summarize``; ``curves`` holds the arrays behind plots.
    With post-hoc steps, every set's metrics are those after the steps, and the raw
    model's are beside them under ``raw/<metric>``. ``keep`` (a ``PredictionWriter``)
    gets every batch's outputs after the post-hoc steps.
    """
    batch_sharding = sharding.batch_sharded(mesh)
    views = ("",) if fitted is None else ("", "raw/")
    evaluated: dict[str, dict] = {view: {} for view in views}
    for set_name, eval_set in evaluation.evaluation_sets(exp.dataset, exp.evaluation).items():
        suite = metrics_lib.eval_suite(exp.dataset.task, eval_set.is_ood)
        set_key = named_key(eval_key, set_name)
        totals = dict.fromkeys(views)
        for index, local in enumerate(_eval_batches(exp, eval_set)):
            batch = sharding.global_batch(local, batch_sharding)
            key = jax.random.fold_in(set_key, index)
            # One collective program in flight at a time (see set_outputs).
            outputs = jax.block_until_ready(eval_step.predict(state, batch["input"], key))
            stats = eval_step.reduce(outputs, batch, eval_set.is_ood, fitted, state, key)
            stats = jax.device_get(stats)
            if keep is not None:
                final = (
                    apply_posthoc(exp, outputs, fitted, state, batch["input"], key)
                    if fitted
                    else outputs
                )
                final = jax.block_until_ready(final)  # before keep's all-gather
                keep.add(set_name, eval_set.is_ood, final, batch)
            for view in views:
                totals[view] = metrics_lib.add_statistics(suite, totals[view], stats[view])
        for view in views:
            evaluated[view][set_name] = evaluation.SetTotals(eval_set.is_ood, suite, totals[view])
    results, curves = evaluation.summarize(evaluated[""], exp.evaluation)
    if fitted is not None:
        raw, _ = evaluation.summarize(evaluated["raw/"], exp.evaluation)
        for name, metrics in raw.items():
            results[name].update({f"raw/{k}": v for k, v in metrics.items()})
    return results, curves


def _epoch(step: int, global_batch_size: int, num_examples: int) -> int:
    return step * global_batch_size // num_examples


def _check_finite(metrics: dict[str, float], step: int, checkpoints: Checkpoints) -> None:
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        last = checkpoints.latest_step()
        kept = f"the last good checkpoint (step {last})" if last is not None else "no checkpoint"
        raise UsageError(
            f"training diverged: {', '.join(f'{k}={v}' for k, v in bad.items())} before step "
            f"{step}; stopped with {kept} kept in {checkpoints.directory}; lower "
            "config.optimizer.learning_rate or check the inputs"
        )


def after_training_steps(exp: Experiment, state: Any) -> AfterTraining | None:
    """What runs between the last step and evaluation: the method's ``after_training``,
    then precise batch-norm statistics for the parameters it leaves (where the model has
    batch norms and ``config.train.precise_batch_norm``); None if neither applies."""
    has_batch_norm = bool(jax.tree.leaves(state.collections.get(BATCH_STATS, {})))
    precise = exp.settings.precise_batch_norm and has_batch_norm
    method = exp.method
    return after_training_sequence(
        method.after_training,
        precise_batch_norm(method.loss_fn, method.rng_streams, len(exp.dataset.train))
        if precise
        else None,
    )


def after_training_settings(exp: Experiment) -> dict:
    """The settings the after-training stage is saved with (and must match)."""
    settings = exp.settings
    return {
        "method": exp.method_config,
        "precise_batch_norm": settings.precise_batch_norm,
        "refit_batches": settings.refit_batches,
    }


def finish_training(exp, state, stages: Stages, mesh, train_key):
    """The after-training steps, once: restored from ``stages/after_training`` if a
    previous run finished them."""
    after_training = after_training_steps(exp, state)
    if after_training is None:
        return state
    settings = after_training_settings(exp)
    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), state
    )
    restored = stages.restore("after_training", abstract, settings)
    if restored is not None:
        return restored
    key = named_key(train_key, "after_training")
    finished = after_training(exp.model.apply, state, split_data(exp, mesh), key)
    same = jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype), state, finished)
    if jax.tree.structure(finished) != jax.tree.structure(state) or not all(jax.tree.leaves(same)):
        raise ValueError(
            "the method's after_training returned a state of another structure than the "
            "one it got; declare what it fits with Method.init_fitted"
        )
    # Whatever sharding XLA gave the new leaves, the state keeps the loop's shardings.
    finished = jax.device_put(finished, jax.tree.map(lambda leaf: leaf.sharding, state))
    stages.save("after_training", finished, settings)
    return finished


def _posthoc_settings(exp: Experiment) -> dict:
    return {"steps": [{"name": e.name, "hparams": e.hparams} for e in exp.posthoc]}


def _abstract_posthoc(exp: Experiment, state, mesh) -> list[Any]:
    """The shapes of the fitted post-hoc parameters, replicated (to restore them)."""
    splits = {}
    for entry in exp.posthoc:
        source = fit_sets(exp.dataset)[entry.step.split].source
        one = source.read(np.zeros(1, np.int64))  # [1, ...] -> [N, ...] shapes
        shapes = {
            k: jax.ShapeDtypeStruct((len(source), *v.shape[1:]), v.dtype) for k, v in one.items()
        }
        splits[entry.step.split] = shapes

    def fit_all(state, splits, key):
        fitted = []
        for entry in exp.posthoc:
            split = splits[entry.step.split]
            if entry.step.network is not None:
                network, forward = entry.step.network, network_forward(exp, state, key)
                statistics = network.init(state.params, forward, split)
                fitted.append(network.finish(statistics, state.params))
                continue
            outputs = predict_outputs(exp, state, split["input"], key)
            targets = {k: v for k, v in split.items() if k != "input"}
            outputs = apply_posthoc(exp, outputs, fitted, state, split["input"], key)
            fitted.append(entry.step.fit(outputs, targets))
        return fitted

    shapes = jax.eval_shape(fit_all, state, splits, jax.random.key(0))
    replicated = sharding.replicated(mesh)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes
    )


def posthoc_parameters(exp, state, eval_step, stages: Stages, mesh, eval_key, writer):
    """The fitted post-hoc parameters, once: restored from ``stages/posthoc`` if a
    previous run fitted them; None without post-hoc steps."""
    if not exp.posthoc:
        return None
    settings = _posthoc_settings(exp)
    restored = stages.restore("posthoc", _abstract_posthoc(exp, state, mesh), settings)
    if restored is not None:
        return restored
    fitted = fit_posthoc(exp, state, eval_step.predict, named_key(eval_key, "posthoc"), mesh)
    writer.write_posthoc(
        [
            {"name": e.name, "hparams": e.hparams, "fitted": p}
            for e, p in zip(exp.posthoc, fitted, strict=True)
        ]
    )
    stages.save("posthoc", fitted, settings)
    return fitted


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Trains (resuming from the latest checkpoint in ``workdir``) and evaluates.

    Returns ``{eval_set_name: {metric_name: value}}``, also written to ``results.json``.
    """
    exp = build(config)
    workdir = workdir_lib.prepare(workdir)
    reevaluate = workdir_lib.check(workdir, config)  # before anything is written
    settings = exp.settings
    determinism.configure(settings.deterministic_ops)  # before JAX starts its backends
    sharding.check_batch_size(settings.global_batch_size, "config.train.global_batch_size")
    sharding.check_batch_size(settings.eval_batch_size, "config.train.eval_batch_size")
    is_writer = jax.process_index() == 0
    if is_writer:
        workdir_lib.write_config(workdir, config, reevaluate)

    mesh = sharding.data_mesh(settings.model_axis_size)
    replicated = sharding.replicated(mesh)
    batch_sharding = sharding.batch_sharded(mesh)
    init_key, train_key, eval_key = jax.random.split(jax.random.key(exp.seed), 3)

    initialize = functools.partial(init_state, exp)
    state_shape = jax.eval_shape(initialize, init_key)
    state_sharding = sharding.state_sharding(mesh, state_shape, exp.method.partition_rules)
    summing_step, zero_sums = summing_metrics(make_train_step(exp))
    train_step = jax.jit(
        summing_step,
        in_shardings=(state_sharding, replicated, batch_sharding, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0, 1),
    )
    zero_sums = jax.jit(zero_sums, out_shardings=replicated)
    eval_step = make_eval_step(exp, mesh, state_sharding)
    epoch_hook = exp.method.on_epoch_start
    if epoch_hook is not None:
        epoch_hook = jax.jit(
            epoch_hook, in_shardings=(state_sharding,), out_shardings=state_sharding
        )

    batches = data_lib.TrainBatches(
        exp.dataset.train,
        settings.global_batch_size,
        seed=exp.seed,
        num_classes=exp.dataset.label_classes,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        augment=exp.dataset.train_augment,
        num_labels=exp.dataset.num_labels,
    )
    iterator = data_lib.train_iterator(batches, exp.total_steps, settings.data_threads)
    checkpoints = Checkpoints(workdir, settings.max_checkpoints_to_keep)
    stages = Stages(workdir)
    start = checkpoints.latest_step()
    if start is None:
        state = jax.jit(initialize, out_shardings=state_sharding)(init_key)
        if exp.init_from.path:
            state = start_from_checkpoint(exp.init_from, state, exp.optimizer, state_sharding)
        start = 0
    else:
        abstract = jax.tree.map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
            state_shape,
            state_sharding,
        )
        state = checkpoints.restore(start, abstract, iterator)

    writer = RunWriter(workdir, enabled=is_writer)
    bar = progress_bar(exp.total_steps, start, enabled=is_writer)
    num_train = len(exp.dataset.train)
    # XLA:CPU runs the in-process collectives of several (fake) CPU devices on a small
    # thread pool, and consecutive steps that overlap there can deadlock (seen with 4
    # devices on 2 cores); on CPU with several devices a step starts when the previous
    # one has finished. Accelerators keep asynchronous dispatch.
    serialize_steps = jax.default_backend() == "cpu" and jax.local_device_count() > 1
    sums, summed_steps = None, 0  # train metrics summed on the device since the last log
    # A finished log interval (its last step, sums, step count) waits to be written
    # until the next step has been dispatched: reading its sums waits for the device,
    # and writing them costs the host ~0.4 ms, which then overlaps that next step
    # instead of leaving the device idle (logging every 10 steps of the digits MLP cost
    # 0.13 ms a step).
    ended: tuple[int, Any, int] | None = None
    last_write = [start, time.perf_counter()]

    def end_interval(step: int) -> None:
        nonlocal sums, summed_steps, ended
        if summed_steps:
            ended = (step, sums, summed_steps)
        sums, summed_steps = None, 0

    def write_ended() -> None:
        nonlocal ended
        if ended is None:
            return
        (step, interval_sums, count), ended = ended, None
        means = {k: float(v) / count for k, v in jax.device_get(interval_sums).items()}
        _check_finite(means, step, checkpoints)
        now = time.perf_counter()
        means["steps_per_second"] = (step - last_write[0]) / (now - last_write[1])
        last_write[:] = step, now
        writer.write(step, "train", means)
        bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)

    try:
        for step in range(start, exp.total_steps):
            if epoch_hook is not None and (
                step == 0
                or _epoch(step, settings.global_batch_size, num_train)
                != _epoch(step - 1, settings.global_batch_size, num_train)
            ):
                state = epoch_hook(state)
            # Dispatch is asynchronous: the host reads batch s + 1 while the device runs
            # step s; with config.train.data_threads grain prepares batches ahead too.
            batch = sharding.global_batch(next(iterator), batch_sharding)
            if serialize_steps:
                state = jax.block_until_ready(state)
            if sums is None:
                sums = zero_sums(state, batch, train_key)
            if step == start and settings.deterministic_ops:
                determinism.warn_nondeterministic(summing_step, state, sums, batch, train_key)
            state, sums = train_step(state, sums, batch, train_key)
            summed_steps += 1
            write_ended()  # the previous interval's metrics, while this step runs
            done = step + 1
            if done % settings.log_every_steps == 0 or done == exp.total_steps:
                end_interval(done)
            if done % settings.checkpoint_every_steps == 0 or done == exp.total_steps:
                end_interval(done)
                write_ended()  # diverged metrics stop the run before its state is saved
                checkpoints.save(done, state, iterator)
            bar.update(1)
        write_ended()
        bar.close()
        state = finish_training(exp, state, stages, mesh, train_key)
        fitted = posthoc_parameters(exp, state, eval_step, stages, mesh, eval_key, writer)
        save = exp.evaluation.save_predictions
        kept = PredictionWriter(exp.dataset.task, mesh) if save else None
        results, curves = evaluate(exp, state, eval_step, eval_key, mesh, fitted, kept)
        for set_name, set_metrics in results.items():
            writer.write(exp.total_steps, set_name, set_metrics)
        if kept is not None and is_writer:
            kept.save(workdir)
        writer.write_results(results, curves)
        run_probes(exp, state, eval_key, mesh, workdir, is_writer, fitted)
    finally:
        bar.close()
        writer.close()
        checkpoints.close()
        stages.close()
    return results

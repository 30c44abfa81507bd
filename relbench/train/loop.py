"""The one train/eval loop: every method, every model, every dataset.

``train_and_evaluate(config, workdir)`` builds the dataset, method, model and
optimizer from their sub-configs, then runs one jitted, sharded train step per batch
and evaluates every evaluation set at the end. The loop never names a method.

Keys (DESIGN.md): ``config.seed`` -> root key -> (init, train, eval) keys. The step's
key is ``fold_in(train_key, step)``, computed inside the jitted step, so a resumed run
draws the same numbers; random arrays are drawn in the global view, so the draws do
not depend on the number of devices.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import time
import uuid
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from relbench import data as data_lib
from relbench import methods as methods_lib
from relbench import metrics as metrics_lib
from relbench import models as models_lib
from relbench.errors import UsageError
from relbench.methods.method import rng_dict
from relbench.registry import check_kwargs
from relbench.train import determinism, evaluation, optimizers, sharding
from relbench.train.checkpoints import Checkpoints
from relbench.train.probes import run_probes
from relbench.train.state import TrainState
from relbench.train.writers import RunWriter, progress_bar


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """``config.train``: how long to train, and how often to log and checkpoint."""

    global_batch_size: int = 128
    num_epochs: float = 10.0
    log_every_steps: int = 50
    checkpoint_every_steps: int = 500
    max_checkpoints_to_keep: int = 2
    eval_batch_size: int = 512
    deterministic_ops: bool = False  # GPU: XLA's deterministic kernels (train/determinism.py)
    data_threads: int = 0  # grain threads reading ahead; 0: read each batch when needed
    ensemble_axis_size: int = 1  # devices that split stacked members (deep_ensemble)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything built from a config, before any training happens."""

    dataset: data_lib.Dataset
    method: methods_lib.Method
    model: Any
    optimizer: optax.GradientTransformation
    settings: LoopSettings
    total_steps: int
    seed: int
    evaluation: evaluation.EvaluationSettings = evaluation.EvaluationSettings()


def build(config: ml_collections.ConfigDict) -> Experiment:
    """Builds the experiment; every unknown name or key is a UsageError that names it."""
    check_kwargs(LoopSettings, config.train, "config.train", "the loop")
    settings = LoopSettings(**config.train)
    dataset = data_lib.make(**config.dataset)
    method = methods_lib.make(**config.method)
    model_kwargs = dict(config.model)
    clash = sorted(set(model_kwargs) & {*method.model_kwargs, "num_classes"})
    if clash:
        raise UsageError(
            f"config.model.{clash[0]} is set by the method or the dataset; remove it from "
            "config.model (set it through config.method or config.dataset)"
        )
    model = models_lib.make(**model_kwargs, **method.model_kwargs, num_classes=dataset.num_classes)
    total_steps = math.ceil(settings.num_epochs * len(dataset.train) / settings.global_batch_size)
    optimizer = optimizers.make(total_steps=total_steps, **config.optimizer)
    # A config without an evaluation suite evaluates the dataset's own sets only.
    evaluation_kwargs = dict(config.evaluation) if "evaluation" in config else {}
    check_kwargs(evaluation.EvaluationSettings, evaluation_kwargs, "config.evaluation", "the loop")
    return Experiment(
        dataset,
        method,
        model,
        optimizer,
        settings,
        total_steps,
        config.seed,
        evaluation.EvaluationSettings(**evaluation_kwargs),
    )


def _prepare_workdir(workdir: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_probe_{uuid.uuid4().hex}"  # processes may share the workdir
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UsageError(
            f"cannot write to workdir '{path}' ({error.strerror}); choose a writable --workdir"
        ) from None
    return path


def _named_key(key: jax.Array, name: str) -> jax.Array:
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


def make_eval_step(exp: Experiment, mesh: jax.sharding.Mesh, state_sharding):
    """The eval step ``(state, batch, key, is_ood) -> per-metric summable statistics``.

    It is two jitted programs: the method's prediction (the model's forward, compiled
    once for every evaluation set) and the reduction of its outputs to the statistics
    of the in-distribution or the OOD metric suite (each compiled once, and cheap).
    """
    replicated = sharding.replicated(mesh)

    def predict(state: TrainState, inputs, key):
        return exp.method.predict_fn(exp.model.apply, state.variables, inputs, key)

    def statistics(outputs, labels, *, is_ood: bool):
        logits, extras = outputs
        predictions = metrics_lib.Predictions(
            logits=logits,
            log_probs=metrics_lib.predictive_log_probs(logits),
            labels=labels["label"],
            mask=labels["mask"],
            extras=extras,
            soft_labels=labels.get("soft_label"),
        )
        suite = metrics_lib.eval_suite(exp.dataset.task, is_ood)
        return metrics_lib.batch_statistics(suite, predictions)

    predict = jax.jit(
        predict, in_shardings=(state_sharding, sharding.batch_sharded(mesh), replicated)
    )
    reduce = {
        is_ood: jax.jit(functools.partial(statistics, is_ood=is_ood), out_shardings=replicated)
        for is_ood in (False, True)
    }

    def eval_step(state: TrainState, batch, key, is_ood: bool):
        labels = {name: value for name, value in batch.items() if name != "input"}
        return reduce[is_ood](predict(state, batch["input"], key), labels)

    return eval_step


def init_state(exp: Experiment, init_key: jax.Array) -> TrainState:
    """Initial parameters and collections (called under ``jit``)."""
    dummy = jnp.zeros((1, *exp.dataset.input_shape), jnp.float32)
    if exp.method.init_inputs is not None:
        dummy = exp.method.init_inputs(dummy)
    rngs = {"params": init_key, **rng_dict(init_key, exp.method.rng_streams)}
    variables = dict(exp.model.init(rngs, dummy, train=False))
    params = variables.pop("params")
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=exp.optimizer.init(params),
        collections=variables,
    )


def evaluate(exp: Experiment, state: TrainState, eval_step, eval_key, mesh):
    """Every evaluation set, each example counted once -> ``(results, curves)``.

    ``results`` is ``{set: {metric: value}}`` plus the OOD mixtures and shift-family
    aggregates of ``evaluation.summarize``; ``curves`` holds the arrays behind plots.
    """
    batch_sharding = sharding.batch_sharded(mesh)
    evaluated = {}
    for set_name, eval_set in evaluation.evaluation_sets(exp.dataset, exp.evaluation).items():
        suite = metrics_lib.eval_suite(exp.dataset.task, eval_set.is_ood)
        set_key = _named_key(eval_key, set_name)
        totals = None
        batches = data_lib.eval_batches(
            eval_set.source,
            exp.settings.eval_batch_size,
            None if eval_set.is_ood else exp.dataset.label_classes,
            jax.process_index(),
            jax.process_count(),
        )
        for index, local in enumerate(batches):
            batch = sharding.global_batch(local, batch_sharding)
            key = jax.random.fold_in(set_key, index)
            stats = eval_step(state, batch, key, eval_set.is_ood)
            totals = metrics_lib.add_statistics(suite, totals, jax.device_get(stats))
        evaluated[set_name] = evaluation.SetTotals(eval_set.is_ood, suite, totals)
    return evaluation.summarize(evaluated, exp.evaluation)


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Trains (resuming from the latest checkpoint in ``workdir``) and evaluates.

    Returns ``{eval_set_name: {metric_name: value}}``, also written to ``results.json``.
    """
    workdir = _prepare_workdir(workdir)
    exp = build(config)
    settings = exp.settings
    determinism.configure(settings.deterministic_ops)  # before JAX starts its backends
    sharding.check_batch_size(settings.global_batch_size, "config.train.global_batch_size")
    sharding.check_batch_size(settings.eval_batch_size, "config.train.eval_batch_size")
    is_writer = jax.process_index() == 0
    if is_writer:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")

    mesh = sharding.data_mesh(settings.ensemble_axis_size)
    replicated = sharding.replicated(mesh)
    batch_sharding = sharding.batch_sharded(mesh)
    init_key, train_key, eval_key = jax.random.split(jax.random.key(exp.seed), 3)

    initialize = functools.partial(init_state, exp)
    state_shape = jax.eval_shape(initialize, init_key)
    state_sharding = sharding.state_sharding(mesh, state_shape, exp.method.stacked_members)
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
    )
    iterator = data_lib.train_iterator(batches, exp.total_steps, settings.data_threads)
    checkpoints = Checkpoints(workdir, settings.max_checkpoints_to_keep)
    start = checkpoints.latest_step()
    if start is None:
        state = jax.jit(initialize, out_shardings=state_sharding)(init_key)
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
    last_flush = [start, time.perf_counter()]

    def flush(step: int) -> None:
        nonlocal sums, summed_steps
        if not summed_steps:
            return
        means = {k: float(v) / summed_steps for k, v in jax.device_get(sums).items()}
        sums, summed_steps = None, 0
        _check_finite(means, step, checkpoints)
        now = time.perf_counter()
        means["steps_per_second"] = (step - last_flush[0]) / (now - last_flush[1])
        last_flush[:] = step, now
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
            done = step + 1
            if done % settings.log_every_steps == 0 or done == exp.total_steps:
                flush(done)
            if done % settings.checkpoint_every_steps == 0 or done == exp.total_steps:
                flush(done)
                checkpoints.save(done, state, iterator)
            bar.update(1)
        bar.close()
        results, curves = evaluate(exp, state, eval_step, eval_key, mesh)
        for set_name, set_metrics in results.items():
            writer.write(exp.total_steps, set_name, set_metrics)
        writer.write_results(results, curves)
        run_probes(exp, state, eval_key, mesh, workdir, is_writer)
    finally:
        bar.close()
        writer.close()
        checkpoints.close()
    return results

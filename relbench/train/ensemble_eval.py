"""``relbench eval``: evaluate finished runs from their checkpoints, alone or as one ensemble.

    relbench eval RUN_DIR                              # one run, as its own evaluation did
    relbench eval --ensemble RUN_DIR RUN_DIR ... [--workdir OUT]

An ensemble assembled after the fact from M independently trained runs (different
seeds, even different methods or models on the same dataset): each run's method
predicts its own members ``[M_i, B, K]``, the member axes are concatenated into
``[sum_i M_i, B, K]``, and the one predictive distribution and the same metric suite
apply as for any single model. Each run is rebuilt from its ``config.json`` and its
final checkpoint. Run 0 draws exactly the evaluation keys of its own evaluation (so
``relbench eval RUN_DIR`` reproduces its ``results.json``); run ``i > 0`` folds ``i``
into them. Extra outputs are kept where every run has them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from relbench.errors import UsageError
from relbench.train import sharding
from relbench.train.checkpoints import Checkpoints, Stages
from relbench.train.loop import (
    Experiment,
    after_training_settings,
    after_training_steps,
    build,
    evaluate,
    fit_posthoc,
    init_state,
    make_eval_step,
    named_key,
)
from relbench.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """A run rebuilt from its workdir: its experiment, final state and evaluation key."""

    workdir: pathlib.Path
    dataset_config: dict
    exp: Experiment
    state: TrainState
    eval_key: jax.Array


def _tuples(value):
    """JSON lists back to the tuples the config had (model fields must be hashable)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_run(run_dir: str | pathlib.Path, mesh: jax.sharding.Mesh) -> FinishedRun:
    """Rebuilds a finished run and restores its final train state, replicated on ``mesh``."""
    workdir = pathlib.Path(run_dir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise UsageError(
            f"'{workdir}' has no config.json; pass the --workdir of a `relbench train` run"
        )
    config_dict = _tuples(json.loads(config_path.read_text()))
    exp = build(ml_collections.ConfigDict(config_dict))
    checkpoints = Checkpoints(workdir, max_to_keep=exp.settings.max_checkpoints_to_keep)
    try:
        step = checkpoints.latest_step()
        if step != exp.total_steps:
            raise UsageError(
                f"run '{workdir}' has no final checkpoint (latest step {step}, training "
                f"has {exp.total_steps}); finish it with `relbench train` first"
            )
        init_key, _, eval_key = jax.random.split(jax.random.key(exp.seed), 3)
        shape = jax.eval_shape(functools.partial(init_state, exp), init_key)
        replicated = sharding.replicated(mesh)
        abstract = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shape
        )
        state = checkpoints.restore_state(step, abstract)
    finally:
        checkpoints.close()
    if after_training_steps(exp, state) is not None:  # the final state is the one after it
        stages = Stages(workdir)
        try:
            state = stages.restore("after_training", abstract, after_training_settings(exp))
        finally:
            stages.close()
        if state is None:
            raise UsageError(
                f"run '{workdir}' has not finished its after-training step; finish it with "
                "`relbench train` first"
            )
    return FinishedRun(workdir, config_dict["dataset"], exp, state, eval_key)


@flax.struct.dataclass
class EnsembleState:
    """The runs' final states, read by the loop's eval step as one model's state."""

    states: tuple[TrainState, ...]


def ensemble_predict(runs: Sequence[FinishedRun]):
    """A ``predict_fn`` over the runs' states: ``[sum_i M_i, B, K]`` logits."""

    def predict_fn(apply_fn, state, inputs, key):
        del apply_fn  # each run applies its own model.
        keys = [key] + [jax.random.fold_in(key, i) for i in range(1, len(runs))]
        outputs = [
            run.exp.method.predict_fn(run.exp.model.apply, run_state, inputs, run_key)
            for run, run_state, run_key in zip(runs, state.states, keys, strict=True)
        ]
        logits = jnp.concatenate([logits for logits, _ in outputs])  # [sum M_i, B, K]
        # An extra joins where every run has it with the same shape per member (the
        # penultimate features of different models differ in width).
        first = outputs[0][1]
        common = [
            k
            for k in sorted(first)
            if all(k in e and e[k].shape[1:] == first[k].shape[1:] for _, e in outputs)
        ]
        extras = {k: jnp.concatenate([e[k] for _, e in outputs]) for k in common}
        return logits, extras

    return predict_fn


def evaluate_runs(run_dirs: Sequence[str | pathlib.Path]) -> dict:
    """Evaluates the runs as one ensemble: ``{eval_set: {metric: value}}``, every set
    and summary of the runs' evaluation protocol (that of the first run)."""
    if not run_dirs:
        raise UsageError("eval needs at least one RUN_DIR")
    mesh = sharding.data_mesh()
    runs = [load_run(run_dir, mesh) for run_dir in run_dirs]
    first = runs[0]
    for run in runs[1:]:
        if run.dataset_config != first.dataset_config:
            raise UsageError(
                f"runs '{first.workdir}' and '{run.workdir}' use different datasets "
                f"({first.dataset_config} vs {run.dataset_config}); ensemble runs of one dataset"
            )
    sharding.check_batch_size(first.exp.settings.eval_batch_size, "config.train.eval_batch_size")
    method = dataclasses.replace(first.exp.method, predict_fn=ensemble_predict(runs))
    exp = dataclasses.replace(first.exp, method=method)
    state = EnsembleState(tuple(run.state for run in runs))
    state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), state)
    eval_step = make_eval_step(exp, mesh, state_sharding)
    # The first run's post-hoc steps, fitted on the ensemble's outputs.
    fitted = fit_posthoc(exp, state, eval_step.predict, named_key(first.eval_key, "posthoc"), mesh)
    results, _ = evaluate(exp, state, eval_step, first.eval_key, mesh, fitted or None)
    return results

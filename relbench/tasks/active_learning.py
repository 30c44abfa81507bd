"""Pool-based active learning over any dataset and any method, on the one train loop.

    relbench active-learn --config FILE.py[:ARG] --workdir DIR

The config is a training config with one more section, ``config.active_learning``
(``ActiveLearningSettings``). The loop starts from ``initial_labels`` training examples
drawn at random from ``config.seed`` (their labels are "bought"; every other training
example is the unlabelled pool), then for every round ``r = 0 .. num_rounds``:

1. trains and evaluates with ``relbench.train.loop.train_and_evaluate`` on the labelled
   set (the ``labelled_subset`` dataset of ``relbench.data.subset``), in
   ``DIR/rounds/round_<r>``: from scratch (``training="retrain"``) or starting from the
   previous round's final parameters (``training="fine_tune"``, ``config.init_from``);
2. unless it is the last round, predicts on the pool with the method's ``predict_fn``
   (members or samples, and the penultimate features), and labels the
   ``acquisition_batch`` pool examples the acquisition function picks
   (``relbench.tasks.acquisition``), with a key derived from ``config.seed`` and ``r``.

Round ``r``'s labelled set is written to ``DIR/labelled/round_<r>.json`` (atomically)
before the round trains, and ``DIR/learning_curve.json`` holds, after every round, the
number of labels and the ``curve_set``'s accuracy, NLL and ECE of each round so far.
Everything is a function of the config, so a loop killed at any moment (inside a round:
the train loop resumes from its checkpoint; between rounds: from the last labelled set
written) resumes to the same labelled sets and the same curve, bit for bit.
``relbench report DIR ...`` draws the learning curves of several such workdirs: one
curve per acquisition function, the mean and spread over seeds.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from relbench import data as data_lib
from relbench.errors import UsageError
from relbench.registry import check_kwargs
from relbench.tasks.acquisition import ACQUISITIONS, PoolOutputs
from relbench.train import loop, sharding
from relbench.train import workdir as workdir_lib
from relbench.train.init_from import continued_from
from relbench.train.writers import _write_atomically

CURVE_METRICS = ("accuracy", "nll", "ece")
TRAINING_MODES = ("retrain", "fine_tune")


@dataclasses.dataclass(frozen=True)
class ActiveLearningSettings:
    """``config.active_learning``.

    Attributes:
      acquisition: the acquisition function's name (``relbench.tasks.acquisition``).
      initial_labels: labelled examples before the first round, drawn at random.
      acquisition_batch: examples labelled after each round but the last.
      num_rounds: acquisition rounds; the loop trains ``num_rounds + 1`` times.
      num_epochs: epochs of the labelled set each round trains (``config.train.num_epochs``
        is left to the config as a plain training config).
      training: ``"retrain"`` (every round from scratch) or ``"fine_tune"`` (from the
        previous round's parameters).
      curve_set: the evaluation set whose metrics make the learning curve.
    """

    acquisition: str = "random"
    initial_labels: int = 20
    acquisition_batch: int = 10
    num_rounds: int = 5
    num_epochs: float = 100.0
    training: str = "retrain"
    curve_set: str = "test"


def active_learning_config(**overrides) -> ml_collections.ConfigDict:
    """``config.active_learning`` with every field of ``ActiveLearningSettings``."""
    check_kwargs(ActiveLearningSettings, overrides, "config.active_learning", "active learning")
    fields = {f.name: f.default for f in dataclasses.fields(ActiveLearningSettings)}
    return ml_collections.ConfigDict({**fields, **overrides})


def _settings(config: ml_collections.ConfigDict) -> ActiveLearningSettings:
    if "active_learning" not in config:
        raise UsageError(
            "the config has no active_learning section; add config.active_learning = "
            "relbench.tasks.active_learning.active_learning_config(...)"
        )
    check_kwargs(
        ActiveLearningSettings, config.active_learning, "config.active_learning", "active learning"
    )
    settings = ActiveLearningSettings(**config.active_learning)
    ACQUISITIONS.get(settings.acquisition)  # an unknown name lists the valid ones
    if settings.training not in TRAINING_MODES:
        raise UsageError(
            f"config.active_learning.training '{settings.training}' is not one of "
            f"{', '.join(TRAINING_MODES)}"
        )
    if min(settings.initial_labels, settings.acquisition_batch) < 1 or settings.num_rounds < 0:
        raise UsageError(
            "config.active_learning needs initial_labels >= 1, acquisition_batch >= 1 and "
            "num_rounds >= 0"
        )
    return settings


def round_config(
    config: ml_collections.ConfigDict, labelled: np.ndarray, init_from: str | None
) -> ml_collections.ConfigDict:
    """The train config of one round: the dataset cut to ``labelled``, trained for
    ``active_learning.num_epochs``, no ``active_learning`` section, and ``init_from`` the
    previous round (fine-tuning)."""
    out = copy.deepcopy(config)
    with out.unlocked():
        out.train.num_epochs = float(config.active_learning.num_epochs)
        del out["active_learning"]
        out.dataset = ml_collections.ConfigDict(
            {
                "name": "labelled_subset",
                "dataset": config.dataset.to_dict(),
                "indices": tuple(int(i) for i in labelled),
            }
        )
        if init_from is not None:
            out.init_from = continued_from(config, init_from)
    return out


def _members(config: ml_collections.ConfigDict) -> tuple[int, str]:
    """The number of members or samples the method predicts with, and its name."""
    exp = loop.build(config)
    state = jax.eval_shape(lambda key: loop.init_state(exp, key), jax.random.key(0))
    inputs = jax.ShapeDtypeStruct((1, *exp.dataset.input_shape), jnp.float32)
    logits, _ = jax.eval_shape(
        lambda s, x, k: exp.method.predict_fn(exp.model.apply, s, x, k),
        state,
        inputs,
        jax.random.key(0),
    )
    return logits.shape[0], config.method.name


def _check(config, settings: ActiveLearningSettings, num_train: int) -> None:
    acquisition = ACQUISITIONS.get(settings.acquisition)
    pool = (
        num_train - settings.initial_labels - (settings.num_rounds - 1) * settings.acquisition_batch
    )
    if settings.num_rounds and pool < settings.acquisition_batch:
        raise UsageError(
            f"the unlabelled pool ({num_train - settings.initial_labels} examples after the "
            f"initial {settings.initial_labels}) is smaller than {settings.num_rounds} "
            f"acquisitions of {settings.acquisition_batch}; lower "
            "config.active_learning.acquisition_batch, num_rounds or initial_labels"
        )
    if settings.initial_labels > num_train:
        raise UsageError(
            f"config.active_learning.initial_labels {settings.initial_labels} exceeds the "
            f"{num_train} training examples; lower it"
        )
    if acquisition.needs_members:
        members, method = _members(round_config(config, np.arange(1), None))
        if members < 2:
            raise UsageError(
                f"acquisition '{settings.acquisition}' needs several members or samples, but "
                f"method '{method}' predicts with one; choose a method with members or "
                "samples (mc_dropout, deep_ensemble, batchensemble, variational, swag) or "
                "the acquisition entropy, margin or least_confidence"
            )


def _read_labelled(path: pathlib.Path) -> np.ndarray | None:
    if not path.exists():
        return None
    return np.asarray(json.loads(path.read_text())["indices"], np.int64)


def _acquire(settings, train: data_lib.Source, round_dir, labelled, key) -> np.ndarray:
    """The labelled set of the next round: ``labelled`` and the acquired pool examples."""
    mesh = sharding.data_mesh()
    from relbench.train.ensemble_eval import load_run  # rebuilds a finished run

    run = load_run(round_dir, mesh)
    pool = np.setdiff1d(np.arange(len(train)), labelled)  # ascending positions
    base = run.exp.dataset
    pool_set = data_lib.EvalSet(data_lib.SubsetSource(train, pool))
    exp = dataclasses.replace(
        run.exp, dataset=dataclasses.replace(base, eval_sets={"pool": pool_set})
    )
    state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), run.state)
    predict = loop.make_eval_step(exp, mesh, state_sharding).predict
    predict_key, acquire_key = jax.random.split(key)
    (logits, extras), _ = loop.set_outputs(exp, run.state, predict, "pool", predict_key, mesh)
    outputs = PoolOutputs(logits=logits, features=extras.get("features"))
    acquisition = ACQUISITIONS.get(settings.acquisition)
    picked = np.asarray(acquisition.acquire(outputs, settings.acquisition_batch, acquire_key))
    if len(np.unique(picked)) != settings.acquisition_batch:
        raise ValueError(f"acquisition '{settings.acquisition}' picked an example twice")
    return np.concatenate([labelled, pool[picked]])


def _curve(settings, rounds: list[dict], sizes: list[int]) -> dict:
    curve = {"acquisition": settings.acquisition, "num_labels": sizes}
    for metric in CURVE_METRICS:
        curve[metric] = [r[settings.curve_set][metric] for r in rounds]
    return curve


def active_learn(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Runs (or resumes) the loop of the module docstring; returns the learning curve."""
    settings = _settings(config)
    workdir = workdir_lib.prepare(workdir)
    if jax.process_count() > 1:
        raise UsageError("active-learn runs in one process; run it without --distributed")
    dataset = data_lib.make(**config.dataset)
    if settings.curve_set not in dataset.eval_sets or dataset.eval_sets[settings.curve_set].is_ood:
        raise UsageError(
            f"config.active_learning.curve_set '{settings.curve_set}' is not an in-distribution "
            f"set of the dataset; choose one of: "
            f"{', '.join(n for n, s in dataset.eval_sets.items() if not s.is_ood)}"
        )
    num_train = len(dataset.train)
    _check(config, settings, num_train)
    workdir_lib.check(workdir, config)  # a workdir of another config: refused
    workdir_lib.write_config(workdir, config)
    root_key = jax.random.key(config.seed)
    rounds, sizes, labelled_before = [], [], np.zeros(0, np.int64)
    for r in range(settings.num_rounds + 1):
        path = workdir / "labelled" / f"round_{r:03d}.json"
        labelled = _read_labelled(path)
        if labelled is None:
            if r == 0:
                rng = np.random.default_rng([config.seed, zlib.crc32(b"initial_labels")])
                labelled = np.sort(rng.choice(num_train, settings.initial_labels, replace=False))
            else:
                previous = workdir / "rounds" / f"round_{r - 1:03d}"
                key = jax.random.fold_in(loop.named_key(root_key, "acquisition"), r - 1)
                labelled = _acquire(settings, dataset.train, previous, labelled_before, key)
            path.parent.mkdir(exist_ok=True)
            _write_atomically(path, json.dumps({"indices": labelled.tolist()}))
        round_dir = workdir / "rounds" / f"round_{r:03d}"
        init_from = None
        if settings.training == "fine_tune" and r > 0:
            init_from = str(workdir / "rounds" / f"round_{r - 1:03d}")
        results_path = round_dir / "results.json"
        if results_path.exists():
            results = json.loads(results_path.read_text())
        else:
            results = loop.train_and_evaluate(round_config(config, labelled, init_from), round_dir)
        rounds.append(results)
        sizes.append(len(labelled))
        labelled_before = labelled
        curve = _curve(settings, rounds, sizes)
        _write_atomically(workdir / "learning_curve.json", json.dumps(curve, indent=2))
    return curve

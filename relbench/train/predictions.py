"""Any model's predictions, evaluated by the run's own protocol; and a run's, saved.

    relbench evaluate-predictions FILE.npz --out DIR [--batch-size 512]

``FILE.npz`` holds, per evaluation set ``<set>`` (a name such as ``test``, an OOD
set's, or a shift set's ``suite/corruption/severity``):

* ``<set>/logits``: member logits ``[M, N, K]`` or ``[N, K]`` (one member), or
  ``<set>/probs``: member probabilities of the same shapes (their log is used as
  logits; the predictive distribution is the mean member probability either way);
  for regression, ``<set>/logits`` are the member means ``[M, N, O]`` and
  ``<set>/variance`` their variances;
* ``<set>/labels``: ``[N]`` integer classes (``[N, O]`` regression targets); a set
  without labels is an OOD set, and ``<set>/is_ood`` (a boolean scalar) says it
  explicitly where OOD examples carry targets;
* optionally ``<set>/soft_labels`` ``[N, K]``, ``<set>/variance`` ``[M, N]`` (an
  uncertainty score such as a GP variance), and a top-level ``task``
  (``classification`` by default, or ``regression``).

The sets become a dataset whose "model" returns the stored outputs, evaluated by the
loop's own ``evaluate`` (``relbench.train.loop``): the same batches, the same jitted
statistics on the same device mesh, the same OOD pooling with ``ood_reference`` and
the same shift-family means. ``DIR`` gets ``results.json`` and ``curves.json`` exactly
as a run writes them, and a ``config.json`` naming the dataset, model and method
(``--dataset``, ``--model``, ``--method``) that ``relbench report`` groups by, so a
model trained anywhere (PyTorch, scikit-learn) joins the same leaderboard.

A relbench run writes such a file of its own, ``predictions.npz`` in its workdir, when
``config.evaluation.save_predictions`` is set: every set's member outputs after the
post-hoc steps, labels, OOD flags and task. Evaluated with the run's
``eval_batch_size`` on the same number of devices, it reproduces the run's
``results.json`` and ``curves.json`` bit for bit (the ``raw/`` metrics of a run with
post-hoc steps excepted): float32 statistics are summed per batch, so another batch
size changes the last digits.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from relbench import data as data_lib
from relbench.errors import UsageError
from relbench.methods import likelihoods
from relbench.methods.method import Method
from relbench.train import sharding
from relbench.train.evaluation import EvaluationSettings
from relbench.train.loop import Experiment, LoopSettings, evaluate, make_eval_step
from relbench.train.writers import OUTPUT_EXTRAS, RunWriter

FIELDS = ("logits", "probs", "labels", "variance", "soft_labels", "is_ood")


def read_sets(path: str | pathlib.Path) -> tuple[str, dict[str, dict[str, np.ndarray]]]:
    """``(task, {set: {field: array}})`` of a predictions file, sets in file order."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise UsageError(f"predictions file '{path}' does not exist; pass an .npz file")
    with np.load(file, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    task = str(arrays.pop("task", "classification"))
    sets: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        name, _, field = key.rpartition("/")
        if not name or field not in FIELDS:
            raise UsageError(
                f"'{path}' has an array '{key}'; name arrays '<set>/<field>' with a field "
                f"of: {', '.join(FIELDS)} (and an optional top-level 'task')"
            )
        sets.setdefault(name, {})[field] = value
    if not sets:
        raise UsageError(f"'{path}' holds no '<set>/logits' or '<set>/probs' arrays")
    return task, sets


def _members(value: np.ndarray, name: str, field: str) -> np.ndarray:
    """``[N, K]`` -> ``[1, N, K]``; ``[M, N, K]`` as it is."""
    if value.ndim == 2:
        return value[None]
    if value.ndim != 3:
        raise UsageError(f"'{name}/{field}' has shape {value.shape}; give [M, N, K] or [N, K]")
    return value


def _outputs(name: str, fields: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A set's member outputs ``{"logits": [M, N, K], extras...}``, float32."""
    if ("logits" in fields) == ("probs" in fields):
        raise UsageError(f"set '{name}' needs exactly one of '{name}/logits', '{name}/probs'")
    if "logits" in fields:
        logits = _members(fields["logits"], name, "logits").astype(np.float32)
    else:
        probs = _members(fields["probs"], name, "probs").astype(np.float64)
        if np.any(probs < 0) or not np.allclose(probs.sum(-1), 1, atol=1e-3):
            raise UsageError(f"'{name}/probs' are not probabilities summing to 1 over classes")
        logits = np.log(np.maximum(probs, np.finfo(np.float32).tiny)).astype(np.float32)
    if not np.isfinite(logits).all():
        raise UsageError(f"set '{name}' has NaN or infinite logits; fix the predictions")
    outputs = {"logits": logits}
    for extra in OUTPUT_EXTRAS:
        if extra in fields:
            value = np.asarray(fields[extra], np.float32)
            if value.shape[:2] != logits.shape[:2]:
                raise UsageError(
                    f"'{name}/{extra}' has shape {value.shape}; it needs [M, N, ...] with the "
                    f"logits' M, N = {logits.shape[:2]}"
                )
            outputs[extra] = value
    return outputs


def predictions_dataset(task: str, sets: Mapping[str, Mapping[str, np.ndarray]]):
    """The sets as a Dataset whose inputs are the flattened member outputs ``[N, D]``,
    and ``unpack(inputs [B, D]) -> (logits [M, B, K], extras)``."""
    outputs = {name: _outputs(name, fields) for name, fields in sets.items()}
    first = next(iter(outputs.values()))
    layout = [(key, value.shape[0], value.shape[2:]) for key, value in first.items()]
    eval_sets = {}
    for name, out in outputs.items():
        shapes = [(key, value.shape[0], value.shape[2:]) for key, value in out.items()]
        if shapes != layout:
            raise UsageError(
                f"set '{name}' has outputs {shapes}, another set {layout}; every set needs "
                "the same members, classes and extras"
            )
        n = out["logits"].shape[1]
        # [M, N, ...] -> [N, M * ...] per output, joined on the last axis.
        flat = np.concatenate([np.swapaxes(v, 0, 1).reshape(n, -1) for v in out.values()], 1)
        fields = sets[name]
        is_ood = bool(fields.get("is_ood", "labels" not in fields))
        if "labels" in fields:
            labels = np.asarray(fields["labels"])
            labels = labels.astype(np.int32 if task == "classification" else np.float32)
        else:
            labels = np.full(n, -1, np.int32)  # OOD examples have no class
        if len(labels) != n:
            raise UsageError(f"set '{name}' has {len(labels)} labels for {n} predictions")
        examples = {"input": flat, "label": labels}
        if "soft_labels" in fields:
            examples["soft_label"] = np.asarray(fields["soft_labels"], np.float32)
        eval_sets[name] = data_lib.EvalSet(data_lib.ArraySource(examples), is_ood=is_ood)

    def unpack(inputs):
        pieces, start = {}, 0
        for key, members, tail in layout:
            size = members * int(np.prod(tail, dtype=int))
            piece = inputs[:, start : start + size].reshape(inputs.shape[0], members, *tail)
            pieces[key] = jnp.swapaxes(piece, 0, 1)  # [B, M, ...] -> [M, B, ...]
            start += size
        logits = pieces.pop("logits")
        return logits, pieces

    num_classes = first["logits"].shape[-1]
    if task == "classification":
        for name, eval_set in eval_sets.items():
            if not eval_set.is_ood:
                labels = eval_set.source.arrays["label"]
                data_lib.sources.check_labels(labels, num_classes, f"set '{name}'")
    any_set = next(iter(eval_sets.values())).source
    dataset = data_lib.Dataset(
        train=any_set,  # never read: nothing trains
        eval_sets=eval_sets,
        num_classes=num_classes,
        input_shape=any_set.arrays["input"].shape[1:],
        task=task,
    )
    return dataset, unpack


@dataclasses.dataclass(frozen=True)
class StoredOutputs:
    """The "model" of stored predictions: ``apply(inputs)`` unpacks them."""

    apply: Callable[[jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def _not_trainable(*args, **kwargs):
    raise TypeError("stored predictions are evaluated, never trained")


def evaluate_predictions(
    path: str | pathlib.Path,
    batch_size: int = 512,
    ood_reference: str = "test",
) -> tuple[dict, dict]:
    """``(results, curves)`` of a predictions file, by the loop's evaluation."""
    task, sets = read_sets(path)
    if task not in ("classification", "regression", "multilabel"):
        raise UsageError(f"'{path}' has task '{task}'; use classification or regression")
    dataset, unpack = predictions_dataset(task, sets)
    sharding.check_batch_size(batch_size, "evaluate-predictions --batch-size")

    def predict_fn(apply_fn, state, inputs, key):
        del state, key  # the outputs are stored: nothing to compute
        return apply_fn(inputs)

    exp = Experiment(
        dataset=dataset,
        likelihood=likelihoods.for_task(task),
        method=Method(loss_fn=_not_trainable, predict_fn=predict_fn),
        model=StoredOutputs(unpack),
        optimizer=optax.identity(),  # nothing trains
        settings=LoopSettings(eval_batch_size=batch_size),
        total_steps=0,
        seed=0,
        evaluation=EvaluationSettings(ood_reference=ood_reference, shift_suite=""),
    )
    mesh = sharding.data_mesh()
    state = jax.device_put(jnp.zeros(()), sharding.replicated(mesh))
    eval_step = make_eval_step(exp, mesh, sharding.replicated(mesh))
    return evaluate(exp, state, eval_step, jax.random.key(0), mesh)


def write_evaluation(
    path: str | pathlib.Path,
    out: str | pathlib.Path,
    batch_size: int = 512,
    ood_reference: str = "test",
    names: Mapping[str, str] | None = None,
) -> dict:
    """Evaluates a predictions file into ``out`` (``results.json``, ``curves.json`` and a
    ``config.json`` for ``relbench report``); an ``out`` with results is refused."""
    out = pathlib.Path(out)
    if (out / "results.json").exists():
        raise UsageError(f"'{out}' already holds results.json; choose a new --out directory")
    results, curves = evaluate_predictions(path, batch_size, ood_reference)
    names = {
        "dataset": "predictions",
        "model": "external",
        "method": pathlib.Path(path).stem,
        **(names or {}),
    }
    config = {
        "seed": 0,
        **{section: {"name": name} for section, name in names.items()},
        "predictions": str(path),
        "evaluation": {"eval_batch_size": batch_size, "ood_reference": ood_reference},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    writer = RunWriter(out, enabled=True)
    try:
        writer.write_results(results, curves)
    finally:
        writer.close()
    return results

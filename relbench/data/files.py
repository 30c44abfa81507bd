"""Datasets from the user's own files, configured, with no code: ``arrays`` and ``table``.

* ``arrays``: numpy arrays of inputs and labels. A *file* is either an ``.npz`` archive
  holding the arrays ``input_key`` and ``label_key``, or a directory holding
  ``<input_key>.npy`` and ``<label_key>.npy``.
* ``table``: a CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) table, read by pyarrow:
  feature columns and one target column, for classification (integer or string
  targets; strings become classes in sorted order) or regression.

The image-folder kind (``relbench.data.image_folders``) shares the splits and checks here.

**Splits.** Either ``path`` names one file that is cut into train / validation / test by
``fractions`` with a fixed shuffle drawn from ``split_seed`` (a set of fraction 0 is
left out), or ``splits`` maps set names to files (``{"train": ..., "test": ...}``;
``train`` is required, every other name becomes an in-distribution evaluation set).
The split never depends on the run's seed: it is part of the data.

**The UCI protocol** (Hernandez-Lobato & Adams 2015 [1]): ``k`` random 90/10 splits of
one table, each trained and evaluated, the mean and spread over splits reported. Run
it as ``k`` runs with ``config.dataset.split_seed`` in ``0..k-1``; ``relbench report``
groups runs that differ only in their seed or ``dataset.split_seed`` into one row,
mean ± sample std (``relbench.report.runs``).

**Standardization** (``standardize``; on by default for tables): every feature is
shifted and scaled by its mean and standard deviation on the *training* split, and so
is a regression target, so regression metrics are in units of the target's training
standard deviation (as for ``diabetes``). A constant feature is only shifted.

**Evaluation sets.** ``ood`` maps names to files of inputs that belong to no class
(labels are not read), ``shifts`` names to labelled files of shifted data, evaluated
like the test set (name them ``suite/corruption/severity`` to get a shift-family
mean); ``config.evaluation.shift_suite`` corrupts an in-distribution set as for the
built-in datasets.

**Bad input** is one UsageError line that names the file and the fix: a missing file,
key or column, arrays of unequal lengths, NaN or infinite values, labels outside
``[0, num_classes)``.

References:
  [1] Hernandez-Lobato, Adams. Probabilistic Backpropagation for Scalable Learning of
      Bayesian Neural Networks. ICML 2015. https://arxiv.org/abs/1502.05336
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from relbench.data.sources import ArraySource, Dataset, EvalSet, check_labels, split_by_fraction
from relbench.errors import UsageError

TASKS = ("classification", "regression")
SPLIT_NAMES = ("train", "validation", "test")

#: ``(file, config field) -> examples``: the arrays of one file, keyed as a Source's.
Reader = Callable[[str, str], dict[str, np.ndarray]]


def existing(path: str, field: str, what: str) -> pathlib.Path:
    """``path`` as a Path; a missing one is a UsageError naming ``config.dataset.<field>``."""
    if not path:
        raise UsageError(f"config.dataset.{field} is empty; name the {what}")
    resolved = pathlib.Path(path).expanduser()
    if not resolved.exists():
        raise UsageError(f"{what} '{path}' does not exist; fix config.dataset.{field}")
    return resolved


def check_finite(values: np.ndarray, where: str) -> None:
    """Raises a UsageError naming the first row with a NaN or infinite value."""
    if not np.issubdtype(values.dtype, np.number):
        return
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        raise UsageError(
            f"{where} has NaN or infinite values in {int(bad.sum())} rows (first: row "
            f"{int(np.argmax(bad))}); remove or impute them"
        )


def check_lengths(examples: Mapping[str, np.ndarray], where: str) -> None:
    lengths = {key: len(value) for key, value in examples.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"'{k}' has {n} rows" for k, n in lengths.items())
        raise UsageError(f"{where}: {listed}; every example needs exactly one label")


def class_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Integer class labels as int32; floats must hold whole numbers."""
    if labels.ndim != 1:
        raise UsageError(
            f"{where}: class labels of shape {labels.shape}; store one integer label per "
            "example, shape [N]"
        )
    if np.issubdtype(labels.dtype, np.floating):
        check_finite(labels, where)
        if np.any(labels != np.round(labels)):
            raise UsageError(
                f"{where}: class labels must be whole numbers; for real-valued targets "
                "set config.dataset.task='regression'"
            )
    elif not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"{where}: labels of dtype {labels.dtype}; store integer class labels")
    return labels.astype(np.int32)


def labelled_sets(
    read: Reader,
    path: str,
    splits: Mapping[str, str],
    fractions: Sequence[float],
    split_seed: int,
    shifts: Mapping[str, str],
) -> dict[str, dict[str, np.ndarray]]:
    """``{set name: examples}`` of every labelled set, ``train`` first."""
    if bool(path) == bool(splits):
        raise UsageError(
            "set exactly one of config.dataset.path (one file, cut by fractions) and "
            "config.dataset.splits (a file per set: {'train': ..., 'test': ...})"
        )
    if splits:
        if "train" not in splits:
            raise UsageError(
                f"config.dataset.splits names {', '.join(splits)} but no 'train'; add it"
            )
        sets = {"train": read(splits["train"], "splits.train")}
        sets.update({n: read(f, f"splits.{n}") for n, f in splits.items() if n != "train"})
    else:
        fractions = tuple(float(f) for f in fractions)
        if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) > 1 + 1e-9:
            raise UsageError(
                f"config.dataset.fractions {fractions} must be 3 non-negative fractions "
                "(train, validation, test) summing to at most 1"
            )
        if fractions[0] == 0 or fractions[2] == 0:
            raise UsageError(
                f"config.dataset.fractions {fractions} leaves no training or no test set"
            )
        parts = split_by_fraction(read(path, "path"), fractions, split_seed)
        sets = {n: p.arrays for n, p, f in zip(SPLIT_NAMES, parts, fractions, strict=True) if f > 0}
    for name, file in shifts.items():
        sets[name] = read(file, f"shifts.{name}")
    return sets


def num_classes_of(sets: Mapping[str, Mapping[str, np.ndarray]], num_classes: int) -> int:
    """``num_classes``, or one more than the largest training label if it is 0; every
    set's labels are checked against it."""
    if num_classes < 0:
        raise UsageError(f"config.dataset.num_classes must be >= 0, got {num_classes}")
    if num_classes == 0:
        num_classes = int(sets["train"]["label"].max()) + 1
    for name, examples in sets.items():
        check_labels(examples["label"], num_classes, f"the '{name}' set")
    return num_classes


def standardizer(train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> (x - mean) / std`` with the training mean and std (std 1 where it is 0),
    computed in float64."""
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return lambda x: ((x - mean) / std).astype(np.float32)


def array_dataset(
    sets: Mapping[str, Mapping[str, np.ndarray]],
    ood: Mapping[str, np.ndarray],
    task: str,
    num_classes: int,
    standardize: bool,
) -> Dataset:
    """The Dataset of in-memory labelled sets (``train`` among them) and OOD inputs."""
    if task not in TASKS:
        raise UsageError(f"unknown config.dataset.task '{task}'; choose one of: {', '.join(TASKS)}")
    inputs = {name: np.asarray(e["input"], np.float32) for name, e in sets.items()}
    ood = {name: np.asarray(x, np.float32) for name, x in ood.items()}
    shape = inputs["train"].shape[1:]
    for name, x in {**inputs, **ood}.items():
        if x.shape[1:] != shape:
            raise UsageError(
                f"the '{name}' set has inputs of shape {x.shape[1:]}, the training set "
                f"{shape}; every set needs inputs of one shape"
            )
    if task == "classification":
        labels = {n: class_labels(e["label"], f"the '{n}' set") for n, e in sets.items()}
        num_classes = num_classes_of({n: {"label": y} for n, y in labels.items()}, num_classes)
    else:
        labels = {n: np.asarray(e["label"], np.float32) for n, e in sets.items()}
        labels = {n: y.reshape(len(y), -1) for n, y in labels.items()}  # [N] -> [N, O]
        num_classes = labels["train"].shape[1]
    if standardize:
        scale_input = standardizer(inputs["train"])
        inputs = {n: scale_input(x) for n, x in inputs.items()}
        ood = {n: scale_input(x) for n, x in ood.items()}
        if task == "regression":
            scale_target = standardizer(labels["train"])
            labels = {n: scale_target(y) for n, y in labels.items()}
    eval_sets = {
        name: EvalSet(ArraySource({"input": inputs[name], "label": labels[name]}))
        for name in sets
        if name != "train"
    }
    label_dtype, label_shape = labels["train"].dtype, labels["train"].shape[1:]
    for name, x in ood.items():
        unlabelled = np.full((len(x), *label_shape), -1, label_dtype)  # OOD: no class
        eval_sets[name] = EvalSet(ArraySource({"input": x, "label": unlabelled}), is_ood=True)
    return Dataset(
        train=ArraySource({"input": inputs["train"], "label": labels["train"]}),
        eval_sets=eval_sets,
        num_classes=num_classes,
        input_shape=tuple(shape),
        task=task,
    )


def _npz_or_npy(file: str, field: str, keys: Sequence[str], key_fields: Sequence[str]):
    path = existing(file, field, "arrays file")
    if path.is_dir():
        out = {}
        for key, key_field in zip(keys, key_fields, strict=True):
            npy = path / f"{key}.npy"
            if not npy.is_file():
                present = sorted(p.stem for p in path.glob("*.npy"))
                raise UsageError(
                    f"'{path}' has no {key}.npy (it has: {', '.join(present) or 'none'}); "
                    f"set config.dataset.{key_field}"
                )
            out[key] = np.load(npy, allow_pickle=False)
        return out
    if path.suffix != ".npz":
        raise UsageError(
            f"arrays file '{path}' is neither an .npz archive nor a directory of .npy "
            f"files; fix config.dataset.{field}"
        )
    with np.load(path, allow_pickle=False) as archive:
        for key, key_field in zip(keys, key_fields, strict=True):
            if key not in archive:
                raise UsageError(
                    f"'{path}' has no array '{key}' (it has: {', '.join(archive.files)}); "
                    f"set config.dataset.{key_field}"
                )
        return {key: archive[key] for key in keys}


def arrays(
    path: str = "",
    splits: Mapping[str, str] | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    input_key: str = "x",
    label_key: str = "y",
    task: str = "classification",
    num_classes: int = 0,
    standardize: bool = False,
    ood: Mapping[str, str] | None = None,
    shifts: Mapping[str, str] | None = None,
) -> Dataset:
    """Inputs and labels from ``.npz`` archives or directories of ``.npy`` files.

    Args:
      path: one file of every example, cut into sets by ``fractions``.
      splits: instead of ``path``: set name -> file, ``train`` among them.
      fractions: train, validation and test fractions of ``path``.
      split_seed: the shuffle of ``path`` before it is cut.
      input_key, label_key: the arrays' names (``.npz`` keys or ``.npy`` file stems).
      task: ``"classification"`` (integer labels ``[N]``) or ``"regression"`` (float
        targets ``[N]`` or ``[N, O]``).
      num_classes: K; 0 for one more than the largest training label.
      standardize: scale every input element by its training mean and std (and a
        regression target by its own).
      ood: OOD set name -> file of inputs (``input_key`` only).
      shifts: shifted labelled set name -> file.
    """

    def read(file: str, field: str) -> dict[str, np.ndarray]:
        loaded = _npz_or_npy(file, field, (input_key, label_key), ("input_key", "label_key"))
        examples = {"input": loaded[input_key], "label": loaded[label_key]}
        where = f"'{file}'"
        check_lengths({input_key: examples["input"], label_key: examples["label"]}, where)
        check_finite(examples["input"], f"{where} array '{input_key}'")
        return examples

    sets = labelled_sets(read, path, splits or {}, fractions, split_seed, shifts or {})
    ood_inputs = {}
    for name, file in (ood or {}).items():
        x = _npz_or_npy(file, f"ood.{name}", (input_key,), ("input_key",))[input_key]
        check_finite(x, f"'{file}' array '{input_key}'")
        ood_inputs[name] = x
    return array_dataset(sets, ood_inputs, task, num_classes, standardize)


def read_table(file: str, field: str):
    """A CSV or Parquet file as a pyarrow Table."""
    path = existing(file, field, "table")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        from pyarrow import csv

        return csv.read_csv(path)
    if suffix in (".parquet", ".pq"):
        from pyarrow import parquet

        return parquet.read_table(path)
    raise UsageError(
        f"table '{path}' is neither .csv nor .parquet/.pq; convert it or fix config.dataset.{field}"
    )


def _column(table, name: str, file: str, key_field: str):
    if name not in table.column_names:
        raise UsageError(
            f"'{file}' has no column '{name}' (it has: {', '.join(table.column_names)}); "
            f"set config.dataset.{key_field}"
        )
    return table.column(name)


def _numeric(column, name: str, file: str) -> np.ndarray:
    if not _is_number(column):
        raise UsageError(
            f"'{file}' column '{name}' is {column.type}, not numeric; encode it as numbers "
            "or leave it out of config.dataset.features"
        )
    return column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN


def table(
    path: str = "",
    target: str = "target",
    features: Sequence[str] = (),
    task: str = "classification",
    num_classes: int = 0,
    splits: Mapping[str, str] | None = None,
    fractions: Sequence[float] = (0.9, 0.0, 0.1),
    split_seed: int = 0,
    standardize: bool = True,
    ood: Mapping[str, str] | None = None,
    shifts: Mapping[str, str] | None = None,
) -> Dataset:
    """Feature columns and a target column of a CSV or Parquet table.

    Args:
      path: one table of every example, cut into sets by ``fractions`` (by default the
        UCI protocol's 90/10 train/test split; see the module docstring).
      target: the target column.
      features: the feature columns (numeric); empty for every column but the target.
      task: ``"classification"`` or ``"regression"``.
      num_classes: K for integer class targets; 0 for one more than the largest
        training label. String targets are classes in sorted order of the values in
        the training set.
      splits, fractions, split_seed, ood, shifts: as for ``arrays`` (OOD tables need the
        feature columns only).
      standardize: standardize features (and a regression target) with training
        statistics.
    """
    chosen: list[str] = list(features)

    def feature_matrix(tbl, file: str) -> np.ndarray:
        names = chosen or [n for n in tbl.column_names if n != target]
        columns = [_numeric(_column(tbl, n, file, "features"), n, file) for n in names]
        x = np.stack(columns, axis=1)  # [N, F]
        check_finite(x, f"'{file}' features")
        return x

    def read(file: str, field: str) -> dict[str, np.ndarray]:
        tbl = read_table(file, field)
        column = _column(tbl, target, file, "target")
        if task == "classification" and not _is_number(column):
            label = column.to_numpy(zero_copy_only=False).astype(str)  # class names
        else:
            label = _numeric(column, target, file)
            check_finite(label, f"'{file}' target '{target}'")
        return {"input": feature_matrix(tbl, file), "label": label}

    sets = labelled_sets(read, path, splits or {}, fractions, split_seed, shifts or {})
    if sets["train"]["label"].dtype.kind == "U":  # class names -> indices
        names = sorted(set(sets["train"]["label"].tolist()))
        for set_name, examples in sets.items():
            unknown = sorted(set(examples["label"].tolist()) - set(names))
            if unknown:
                raise UsageError(
                    f"the '{set_name}' set has target value '{unknown[0]}', which the "
                    "training set lacks; every class needs training examples"
                )
            examples["label"] = np.searchsorted(names, examples["label"])
        if num_classes not in (0, len(names)):
            raise UsageError(
                f"config.dataset.num_classes is {num_classes}, but the target has "
                f"{len(names)} classes; set it to 0"
            )
    ood_inputs = {
        name: feature_matrix(read_table(file, f"ood.{name}"), file)
        for name, file in (ood or {}).items()
    }
    return array_dataset(sets, ood_inputs, task, num_classes, standardize)


def _is_number(column) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(column.type) or pa.types.is_floating(column.type)

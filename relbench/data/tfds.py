"""TFDS datasets read through ``tfds.data_source`` (array_record) and grain.

No TensorFlow is needed to *read* a prepared dataset. Preparing one (downloading and
converting it) is a separate, one-time step that this module never attempts: it fails
with a message that says how to prepare the data instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from relbench.data.sources import Dataset, EvalSet
from relbench.errors import UsageError


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A TFDS array-record split read a batch at a time as float images and int labels."""

    records: Sequence[Mapping[str, Any]]
    image_key: str = "image"
    label_key: str = "label"

    def __len__(self) -> int:
        return len(self.records)

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        rows = [self.records[int(i)] for i in indices]
        images = np.stack([np.asarray(r[self.image_key]) for r in rows])
        labels = np.array([r[self.label_key] for r in rows], np.int32)
        return {"input": images.astype(np.float32) / 255.0, "label": labels}


def _data_source(name: str, split: str, data_dir: str | None):
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as error:  # tfds raises several types for a missing dataset.
        where = data_dir or "the default TFDS data_dir (~/tensorflow_datasets)"
        raise UsageError(
            f"TFDS dataset '{name}' split '{split}' is not prepared in {where} "
            f"({type(error).__name__}); prepare it once with "
            f"`tfds build {name} --file_format=array_record` in an environment with "
            "TensorFlow, or set config.dataset.data_dir to where it is"
        ) from None


def tfds_dataset(
    tfds_name: str,
    train_split: str = "train",
    eval_splits: Mapping[str, str] | None = None,
    ood: Mapping[str, str] | None = None,
    data_dir: str | None = None,
    image_key: str = "image",
    label_key: str = "label",
) -> Dataset:
    """A TFDS image-classification dataset.

    Args:
      tfds_name: the TFDS name, e.g. ``"mnist"`` or ``"cifar10"``.
      train_split: the split (TFDS slicing syntax allowed, e.g. ``"train[:90%]"``).
      eval_splits: evaluation-set name -> split; default ``{"test": "test"}``.
      ood: evaluation-set name -> ``"dataset:split"`` of another TFDS dataset used as
        out-of-distribution data (its labels are ignored).
      data_dir: where the prepared data lives; None for TFDS's default.
      image_key, label_key: the feature names in the records.
    """
    name = tfds_name
    train = TfdsSource(_data_source(name, train_split, data_dir), image_key, label_key)
    info = tfds.builder(name, data_dir=data_dir).info
    num_classes = info.features[label_key].num_classes
    input_shape = tuple(info.features[image_key].shape)
    eval_sets = {
        set_name: EvalSet(TfdsSource(_data_source(name, split, data_dir), image_key, label_key))
        for set_name, split in (eval_splits or {"test": "test"}).items()
    }
    for set_name, spec in (ood or {}).items():
        ood_name, _, split = spec.partition(":")
        records = _data_source(ood_name, split or "test", data_dir)
        eval_sets[set_name] = EvalSet(TfdsSource(records, image_key, label_key), is_ood=True)
    return Dataset(train, eval_sets, num_classes, input_shape)

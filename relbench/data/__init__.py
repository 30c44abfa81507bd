"""Datasets behind one registry: ``relbench.data.make(name, **kwargs) -> Dataset``."""

from __future__ import annotations

from relbench.data.embedded import digits, two_moons
from relbench.data.sources import (
    ArraySource,
    Dataset,
    EvalSet,
    Probe,
    Source,
    TrainBatches,
    eval_batches,
    train_iterator,
)
from relbench.data.tfds import tfds_dataset
from relbench.registry import Registry

DATASETS = Registry("dataset", {"two_moons": two_moons, "digits": digits, "tfds": tfds_dataset})
make = DATASETS.make

__all__ = [
    "ArraySource",
    "DATASETS",
    "Dataset",
    "EvalSet",
    "Probe",
    "Source",
    "TrainBatches",
    "eval_batches",
    "make",
    "train_iterator",
]

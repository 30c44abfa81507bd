"""Datasets cut from another dataset: a labelled subset, a long tail, class-split tasks.

``labelled_subset(dataset, indices)`` is the dataset that ``dataset`` (a dataset config:
``{"name": ..., **kwargs}``) names, with its training source cut down to the examples
at ``indices`` (positions in the full training source, in that order); its evaluation
sets are unchanged (active learning's labelled set). ``long_tailed`` and ``split_tasks``
cut the training set by class. ``SubsetSource`` is the view all of them use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from relbench.data.sources import Dataset, EvalSet, Source
from relbench.errors import UsageError


@dataclasses.dataclass(frozen=True)
class SubsetSource:
    """The examples of ``source`` at ``indices``, read a batch at a time."""

    source: Source
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return self.source.read(self.indices[np.asarray(indices)])


def labelled_subset(dataset: Mapping, indices: Sequence[int]) -> Dataset:
    """The dataset of ``dataset`` trained on its examples at ``indices`` only."""
    from relbench.data import make  # the registry holds this factory: import when called

    base = make(**dict(dataset))
    positions = np.asarray(indices, np.int64)
    if positions.size == 0 or positions.min() < 0 or positions.max() >= len(base.train):
        raise UsageError(
            f"labelled_subset indices must be non-empty positions in [0, {len(base.train)}) "
            "of the training set; fix config.dataset.indices"
        )
    return dataclasses.replace(base, train=SubsetSource(base.train, positions))


def long_tailed(dataset: Mapping, imbalance_ratio: float = 10.0) -> Dataset:
    """``dataset``'s training set cut to a long tail: class ``k`` of K keeps
    ``n_min * imbalance_ratio^(-k / (K - 1))`` of its examples (``n_min`` the smallest
    class's count; the exponential profile of Cui et al. 2019, CIFAR-10-LT), a fixed
    draw; the evaluation sets are unchanged, so they stay balanced.

    References:
      Cui, Jia, Lin, Song, Belongie. Class-Balanced Loss Based on Effective Number of
      Samples. CVPR 2019. https://arxiv.org/abs/1901.05555
    """
    from relbench.data import make

    if imbalance_ratio < 1:
        raise UsageError(
            f"long_tailed imbalance_ratio {imbalance_ratio} must be >= 1; fix "
            "config.dataset.imbalance_ratio"
        )
    base = make(**dict(dataset))
    if base.label_classes is None:
        raise UsageError("long_tailed needs a classification dataset; use it with one")
    everything = np.arange(len(base.train))
    labels = np.concatenate(
        [
            base.train.read(everything[i : i + 4096])["label"]
            for i in range(0, len(everything), 4096)
        ]
    )
    k = base.num_classes
    smallest = np.bincount(labels, minlength=k).min()
    rng = np.random.default_rng(0)  # part of the benchmark: never the run's seed
    keep = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        size = max(1, int(smallest * imbalance_ratio ** (-c / max(k - 1, 1))))
        keep.append(np.sort(rng.choice(members, size, replace=False)))
    positions = np.sort(np.concatenate(keep))
    return dataclasses.replace(base, train=SubsetSource(base.train, positions))


def _labels(source) -> np.ndarray:
    everything = np.arange(len(source))
    return np.concatenate(
        [source.read(everything[i : i + 4096])["label"] for i in range(0, len(source), 4096)]
    )


def split_tasks(
    dataset: Mapping, tasks: Sequence[Sequence[int]], task: int, eval_set: str = "test"
) -> Dataset:
    """One task of a class-split sequence (split MNIST's construction): ``dataset``
    trained on the examples of the classes ``tasks[task]`` only, and evaluated on
    ``task_<j>``, the examples of ``eval_set`` of each task's classes, for every ``j``.
    The output layer keeps every class (class-incremental)."""
    from relbench.data import make

    base = make(**dict(dataset))
    if not 0 <= task < len(tasks) or eval_set not in base.eval_sets:
        raise UsageError(
            f"split_tasks needs 0 <= task < {len(tasks)} and an evaluation set of the "
            f"dataset ({', '.join(base.eval_sets)}); fix config.dataset"
        )
    train_labels, test = _labels(base.train), base.eval_sets[eval_set].source
    test_labels = _labels(test)
    eval_sets = {
        f"task_{j}": EvalSet(SubsetSource(test, np.flatnonzero(np.isin(test_labels, classes))))
        for j, classes in enumerate(tasks)
    }
    train = SubsetSource(base.train, np.flatnonzero(np.isin(train_labels, tasks[task])))
    return dataclasses.replace(base, train=train, eval_sets=eval_sets)

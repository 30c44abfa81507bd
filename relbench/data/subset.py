"""A dataset restricted to some of its training examples (active learning's labelled set).

``labelled_subset(dataset, indices)`` is the dataset that ``dataset`` (a dataset config:
``{"name": ..., **kwargs}``) names, with its training source cut down to the examples
at ``indices`` (positions in the full training source, in that order); its evaluation
sets are unchanged. ``SubsetSource`` is the view it uses, also for the unlabelled pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from relbench.data.sources import Dataset, Source
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

"""Random-access example sources and the batch readers built on them.

A *source* is anything with ``len(source)`` and ``source.read(indices) -> dict`` that
returns a batch of examples as numpy arrays keyed ``"input"`` and ``"label"``. Reading a
batch at a time (rather than one example at a time) keeps the host side of the loop
cheap. Both the embedded arrays and TFDS array-record sources implement it.

Batches are addressed by their *global* position, never by process: the global batch
at step ``s`` holds the same examples whatever the number of processes, and process
``p`` reads rows ``[p * L, (p + 1) * L)`` of it (``L = global_batch // process_count``).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import grain
import numpy as np

from relbench.errors import UsageError


class Source(Protocol):
    """A random-access collection of examples, read a batch at a time."""

    def __len__(self) -> int: ...

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]: ...


#: Training augmentation ``(batch, seed, positions) -> batch``: every random choice for
#: a row is a pure function of ``(seed, position)``, its place in the global stream of
#: training examples (``step * global_batch_size + row``), so batches do not depend on
#: the number of processes, and a resumed run reads the same batches.
Augment = Callable[[dict[str, np.ndarray], int, np.ndarray], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """Examples held in memory as equally long numpy arrays."""

    arrays: Mapping[str, np.ndarray]

    def __post_init__(self):
        lengths = {len(a) for a in self.arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"arrays of unequal lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[indices] for k, v in self.arrays.items()}


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """An evaluation set: in-distribution (labelled) or out-of-distribution."""

    source: Source
    is_ood: bool = False


@dataclasses.dataclass(frozen=True)
class Probe:
    """Inputs a run predicts on after training, and what it writes from the predictions.

    The loop predicts on ``inputs`` ``[N, ...]`` like on an evaluation set (on every
    process, sharded), then process 0 calls ``write(probs, extras, workdir)`` with the
    predictive distribution ``[N, K]`` and the model's extras ``[M, N, ...]`` as numpy
    arrays: a figure over a grid of inputs, a table of predictions.
    """

    name: str
    inputs: np.ndarray
    write: Callable[[np.ndarray, Mapping[str, np.ndarray], pathlib.Path], None]


@dataclasses.dataclass(frozen=True)
class CorruptionBenchmark:
    """A published corruption benchmark of a dataset: its corruption ``names`` and
    ``read(name, severity)``, the corrupted test set read as the dataset reads its own
    sets, or None where that set is not prepared."""

    names: tuple[str, ...]
    read: Callable[[str, int], EvalSet | None]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset: a training source, named evaluation sets, and optional probes.

    ``task`` picks the likelihood and the metric suite: ``"classification"`` (integer
    labels in ``[0, num_classes)``, optionally a ``"soft_label"`` ``[K]`` distribution
    per example), ``"multilabel"`` (float ``[K]`` 0/1 indicators, one per label;
    ``num_classes`` is K) or ``"regression"`` (float ``[O]`` targets; ``num_classes`` is
    then O, the number of outputs).
    ``train_augment`` (None: none) randomizes training batches on the host;
    evaluation sets are never augmented. ``corrupted`` is the dataset's published
    corruption benchmark (CIFAR-10-C, ImageNet-C), None where it has none.
    """

    train: Source
    eval_sets: Mapping[str, EvalSet]
    num_classes: int
    input_shape: tuple[int, ...]
    task: str = "classification"
    probes: tuple[Probe, ...] = ()
    train_augment: Augment | None = None
    corrupted: CorruptionBenchmark | None = None

    @property
    def label_classes(self) -> int | None:
        """The range labels are checked against; None where labels are not classes."""
        return self.num_classes if self.task == "classification" else None

    @property
    def num_labels(self) -> int | None:
        """K, where labels are ``[K]`` 0/1 indicators (multilabel); None otherwise."""
        return self.num_classes if self.task == "multilabel" else None


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raises a UsageError if any label falls outside ``[0, num_classes)``."""
    bad = (labels < 0) | (labels >= num_classes)
    if np.any(bad):
        raise UsageError(
            f"label {labels[bad][0]} in {where} is outside [0, {num_classes}); "
            "fix the labels or the dataset's num_classes"
        )


def check_multilabels(labels: np.ndarray, num_labels: int, where: str) -> None:
    """Raises a UsageError unless ``labels`` are float ``[B, num_labels]`` 0/1 indicators
    (integer labels are class indices to the Bernoulli likelihood)."""
    if labels.ndim != 2 or labels.shape[1] != num_labels:
        raise UsageError(
            f"labels of shape {labels.shape} in {where}; a multilabel dataset's labels are "
            f"[N, {num_labels}] 0/1 indicators: fix the labels or the dataset's num_classes"
        )
    if not np.issubdtype(labels.dtype, np.floating):
        raise UsageError(
            f"labels of dtype {labels.dtype} in {where}; a multilabel dataset's labels are "
            "float 0/1 indicators: store them as float32"
        )
    bad = (labels != 0) & (labels != 1)
    if np.any(bad):
        raise UsageError(
            f"label value {labels[bad][0]} in {where} is not 0 or 1; a multilabel dataset's "
            "labels are 0/1 indicators (one per label): fix the labels"
        )


def _check(labels: np.ndarray, num_classes: int | None, num_labels: int | None, where: str):
    if num_classes is not None:
        check_labels(labels, num_classes, where)
    if num_labels is not None:
        check_multilabels(labels, num_labels, where)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(size)


@dataclasses.dataclass(frozen=True)
class TrainBatches:
    """The process-local rows of global training batch ``step``, as a pure function.

    Examples are visited epoch by epoch, each epoch in a fresh permutation drawn from
    ``(seed, epoch)``; a global batch may straddle two epochs (repeat-then-batch).
    ``num_classes=None`` skips the class-range check (regression targets, multi-label
    indicators); ``num_labels`` (K) checks multi-label ``[B, K]`` 0/1 indicators.
    ``augment``, if given, then randomizes each row from ``(seed, position)``.
    """

    source: Source
    global_batch_size: int
    seed: int
    num_classes: int | None
    process_index: int = 0
    process_count: int = 1
    augment: Augment | None = None
    num_labels: int | None = None

    def __post_init__(self):
        if self.global_batch_size % self.process_count:
            raise UsageError(
                f"global batch size {self.global_batch_size} is not divisible by the "
                f"{self.process_count} processes; choose a multiple of the process count"
            )

    @property
    def local_batch_size(self) -> int:
        return self.global_batch_size // self.process_count

    def global_indices(self, step: int) -> np.ndarray:
        """The source indices of the global batch at ``step``."""
        n = len(self.source)
        positions = step * self.global_batch_size + np.arange(self.global_batch_size)
        epochs, offsets = np.divmod(positions, n)
        out = np.empty_like(positions)
        for epoch in np.unique(epochs):
            in_epoch = epochs == epoch
            out[in_epoch] = _epoch_permutation(self.seed, int(epoch), n)[offsets[in_epoch]]
        return out

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        start = self.process_index * self.local_batch_size
        rows = self.global_indices(step)[start : start + self.local_batch_size]
        batch = self.source.read(rows)
        _check(batch["label"], self.num_classes, self.num_labels, f"training batch {step}")
        if self.augment is not None:
            positions = step * self.global_batch_size + start + np.arange(self.local_batch_size)
            batch = self.augment(batch, self.seed, positions)
        return batch


def train_iterator(batches: TrainBatches, num_steps: int, threads: int = 0):
    """A checkpointable grain iterator over steps ``0 .. num_steps - 1``.

    Its state (``get_state``/``set_state``, saved with the train state) is the next step,
    so a restored run reads exactly the batches it would have read. ``threads`` > 0
    prepares batches ahead on that many grain threads (worth it where reading decodes
    or augments images); 0 reads each batch on the calling thread when it is asked
    for, ~35 us for an in-memory set against ~200 us of thread hand-off.
    """
    dataset = grain.MapDataset.range(num_steps).map(batches)
    options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)
    return iter(dataset.to_iter_dataset(read_options=options))


def eval_batches(
    source: Source,
    global_batch_size: int,
    num_classes: int | None,
    process_index: int = 0,
    process_count: int = 1,
    num_labels: int | None = None,
):
    """Yields process-local eval batches with a ``mask``; every example counts once.

    The last global batch is padded (by repeating example 0) to full size, and its
    padding rows get ``mask == 0``. ``num_classes=None`` and ``num_labels=None`` skip the
    label checks (OOD sets; ``TrainBatches`` says what each checks).
    """
    n = len(source)
    local = global_batch_size // process_count
    for start in range(0, n, global_batch_size):
        positions = start + process_index * local + np.arange(local)
        mask = positions < n
        batch = source.read(np.where(mask, positions, 0))
        _check(batch["label"][mask], num_classes, num_labels, "an evaluation batch")
        batch["mask"] = mask.astype(np.float32)
        yield batch


def split_by_fraction(
    arrays: Mapping[str, np.ndarray], fractions: Sequence[float], seed: int
) -> list[ArraySource]:
    """Splits arrays into disjoint ArraySources of the given fractions, a fixed shuffle."""
    n = len(next(iter(arrays.values())))
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum([0.0, *fractions]) * n).astype(int)
    return [
        ArraySource({k: v[order[a:b]] for k, v in arrays.items()})
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]

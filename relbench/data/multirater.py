"""Multi-rater data: several raters label each example and disagree where it is hard.

Every split of a multi-rater dataset carries, per example, ``"rater_counts"`` ``[K]``
(how many of its raters voted for each class), ``"soft_label"`` ``[K]`` (the vote
shares, counts / raters) and ``"label"`` (the plurality vote, ties to the smaller
class). Training on ``"soft_label"`` is what every likelihood does where a batch has it
(``relbench.methods.likelihoods``); evaluation sets score the predictive against the
raters with the soft-label metrics of ``relbench.metrics.soft_labels`` (``soft_nll``,
``soft_kl``, ``soft_brier``, ``soft_ece``) beside the usual ones against ``"label"``.

* ``multirater_digits``: the embedded digits (same split) with ``num_raters`` simulated
  raters of unequal skill. Rater ``r`` confuses the digit with its fixed confusable
  partner (``relbench.data.label_noise.PARTNER``) with probability
  ``min(skill_r * rho(x), 0.95)``, where ``rho(x)`` grows with the image's ink
  (``label_noise.noise_rate``) and the skills are spread evenly over ``[0.5, 1.5]``:
  the confusion depends on the input and on the rater. The draws are fixed (part of
  the benchmark), never the run's seed.
* ``cifar10h``: CIFAR-10H [1] through TFDS (``cifar10_h``, prepared with ``tfds build
  cifar10_h --file_format=array_record``): CIFAR-10's 50,000 training images with their
  labels, and the 10,000 test images each labelled by about 50 people
  (``human_labels``): the test set carries their counts and TFDS's ``soft_label``. A
  missing preparation is one error that says how to prepare it.

References:
  [1] Peterson, Battleday, Griffiths, Russakovsky. Human Uncertainty Makes
      Classification More Robust. ICCV 2019. https://arxiv.org/abs/1908.07086
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from relbench.data.embedded import digits
from relbench.data.label_noise import PARTNER, noise_rate
from relbench.data.sources import ArraySource, Dataset, EvalSet
from relbench.errors import UsageError

_RATER_SEED = 2  # the raters' votes are part of the benchmark, like the split
MAX_CONFUSION = 0.95


def votes_to_targets(counts: np.ndarray) -> dict[str, np.ndarray]:
    """``[N, K]`` rater counts -> ``rater_counts``, ``soft_label`` and plurality ``label``."""
    counts = np.asarray(counts, np.int32)
    return {
        "rater_counts": counts,
        "soft_label": (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32),
        "label": np.argmax(counts, axis=1).astype(np.int32),
    }


def rater_skills(num_raters: int) -> np.ndarray:
    """``[R]`` confusion multipliers, evenly spread over [0.5, 1.5] (1 for one rater)."""
    return np.linspace(0.5, 1.5, num_raters) if num_raters > 1 else np.ones(1)


def _rated(source: ArraySource, num_raters: int, max_noise_rate: float, rng) -> ArraySource:
    images, clean = source.arrays["input"], source.arrays["label"]
    confusion = np.minimum(
        rater_skills(num_raters)[:, None] * noise_rate(images, max_noise_rate)[None],
        MAX_CONFUSION,
    )  # [R, N]
    flipped = rng.uniform(size=confusion.shape) < confusion
    votes = np.where(flipped, PARTNER[clean], clean)  # [R, N]
    counts = np.stack([np.bincount(v, minlength=10) for v in votes.T])  # [N, 10]
    return ArraySource({"input": images, **votes_to_targets(counts)})


def multirater_digits(num_raters: int = 5, max_noise_rate: float = 0.45) -> Dataset:
    """Digits labelled by ``num_raters`` simulated raters (module docstring)."""
    if num_raters < 1 or not 0.0 <= max_noise_rate < 0.5:
        raise UsageError(
            f"multirater_digits needs num_raters >= 1 and max_noise_rate in [0, 0.5), got "
            f"{num_raters} and {max_noise_rate}; fix config.dataset"
        )
    base = digits()
    rng = np.random.default_rng(_RATER_SEED)
    train = _rated(base.train, num_raters, max_noise_rate, rng)
    eval_sets = {
        name: s if s.is_ood else EvalSet(_rated(s.source, num_raters, max_noise_rate, rng))
        for name, s in base.eval_sets.items()
    }
    return dataclasses.replace(base, train=train, eval_sets=eval_sets)


@dataclasses.dataclass(frozen=True)
class RatedTfdsSource:
    """A TFDS source whose records carry raters' votes (``human_labels``): its images
    and labels, with each example's rater counts and soft label."""

    images: Any  # relbench.data.tfds.TfdsSource
    records: Sequence[Mapping[str, Any]]
    num_classes: int

    def __len__(self) -> int:
        return len(self.images)

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        batch = self.images.read(indices)
        rows = self.records.__getitems__([int(i) for i in indices])
        counts = np.stack(
            [np.bincount(np.asarray(r["human_labels"]), minlength=self.num_classes) for r in rows]
        )
        soft = np.stack([np.asarray(r["soft_label"], np.float32) for r in rows])
        return {**batch, "rater_counts": counts.astype(np.int32), "soft_label": soft}


def cifar10h(data_dir: str | None = None, in_memory: bool = False) -> Dataset:
    """CIFAR-10H (module docstring): CIFAR-10 training, the human-rated test set."""
    from relbench.data import tfds as tfds_lib  # imports TFDS only when asked for

    dataset = tfds_lib.tfds_dataset("cifar10", data_dir=data_dir, in_memory=in_memory)
    records = tfds_lib._data_source("cifar10_h", "test", data_dir)  # UsageError if missing
    preset = tfds_lib.PRESETS["cifar10"]
    images = tfds_lib.TfdsSource(records, mean=preset.mean, std=preset.std)
    test = EvalSet(RatedTfdsSource(images, records, dataset.num_classes))
    return dataclasses.replace(dataset, eval_sets={**dataset.eval_sets, "test": test})

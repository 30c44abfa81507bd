"""Classification with label noise at a known, input-dependent rate, and soft labels.

``noisy_digits`` takes the embedded 8x8 digits (same split) and flips each label to a
fixed *confusable partner* class (0<->2, 1<->7, 3<->8, 4<->9, 5<->6) with probability

    rho(x) = max_noise_rate * clip((ink(x) - 0.25) / (0.36 - 0.25), 0, 1),

where ``ink(x)`` is the image's mean pixel value (0.25 and 0.36 are about its 5th and
95th percentiles): faint digits keep their label, heavy ones are flipped up to
``max_noise_rate`` of the time. The noise is correlated across classes (each class is
confused with one other), the setting heteroscedastic heads model [1].

Because ``rho`` is known, every example's true label distribution is known:
``q(x) = (1 - rho) e_y + rho e_partner(y)``. Evaluation sets carry it as
``"soft_label"`` (so the soft-label metrics score against the truth) and one noisy
draw as ``"label"``. The training set has noisy labels; with ``num_raters > 0`` it also
carries soft labels — the vote shares of that many independent noisy raters (the hard
``"label"`` is the first rater's vote) — and the losses train on them.

References:
  [1] Collier, Mustafa, Kokiopoulou, Jenatton, Berent. Correlated Input-Dependent
      Label Noise in Large-Scale Image Classification. CVPR 2021.
      https://arxiv.org/abs/2105.10305
"""

from __future__ import annotations

import dataclasses

import numpy as np

from relbench.data.embedded import digits
from relbench.data.sources import ArraySource, Dataset, EvalSet

PARTNER = np.array([2, 7, 0, 8, 9, 6, 5, 1, 3, 4])
INK_RAMP = (0.25, 0.36)
_NOISE_SEED = 1  # the noisy labels are part of the benchmark, like the split.


def noise_rate(images: np.ndarray, max_noise_rate: float) -> np.ndarray:
    """``[N]`` flip probability ``rho(x)`` of each ``[N, ...]`` image."""
    ink = images.reshape(len(images), -1).mean(axis=1)
    low, high = INK_RAMP
    return max_noise_rate * np.clip((ink - low) / (high - low), 0.0, 1.0)


def true_label_distribution(
    images: np.ndarray, labels: np.ndarray, max_noise_rate: float
) -> np.ndarray:
    """``[N, 10]`` the distribution of the noisy label given the image and clean label."""
    rho = noise_rate(images, max_noise_rate)[:, None]
    eye = np.eye(10)
    return (1 - rho) * eye[labels] + rho * eye[PARTNER[labels]]


def _noisy(source: ArraySource, max_noise_rate: float, num_raters: int, rng, train: bool):
    images, clean = source.arrays["input"], source.arrays["label"]
    truth = true_label_distribution(images, clean, max_noise_rate)
    raters = max(num_raters, 1)
    flipped = rng.uniform(size=(raters, len(clean))) < noise_rate(images, max_noise_rate)
    votes = np.where(flipped, PARTNER[clean], clean)  # [R, N]
    arrays = {"input": images, "label": votes[0].astype(np.int32)}
    if not train:
        arrays["soft_label"] = truth.astype(np.float32)
    elif num_raters > 0:
        counts = np.stack([np.bincount(v, minlength=10) for v in votes.T])  # [N, 10]
        arrays["soft_label"] = (counts / raters).astype(np.float32)
    return ArraySource(arrays)


def noisy_digits(max_noise_rate: float = 0.45, num_raters: int = 0) -> Dataset:
    """Digits with partner-class label noise at rate ``rho(x)`` (module docstring)."""
    if not 0.0 <= max_noise_rate < 0.5:
        raise ValueError(f"max_noise_rate must be in [0, 0.5), got {max_noise_rate}")
    base = digits()
    rng = np.random.default_rng(_NOISE_SEED)
    train = _noisy(base.train, max_noise_rate, num_raters, rng, train=True)
    eval_sets = {
        name: s if s.is_ood else EvalSet(_noisy(s.source, max_noise_rate, 0, rng, train=False))
        for name, s in base.eval_sets.items()
    }
    return dataclasses.replace(base, train=train, eval_sets=eval_sets)

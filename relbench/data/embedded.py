"""Datasets that ship with the code: nothing to download, ready on any machine.

* ``two_moons``: scikit-learn's two interleaving half circles, with a far-from-data
  OOD set on a ring around them (the classic distance-awareness picture); a run on it
  also draws its predictive uncertainty over the plane (``data.plots``).
* ``digits``: scikit-learn's 1,797 8x8 handwritten digits, pixel values scaled to
  [0, 1], in a fixed 70/10/20 train/validation/test split; uniform-noise images form
  its OOD set.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as sklearn_datasets

from relbench.data.plots import uncertainty_surface
from relbench.data.sources import ArraySource, Dataset, EvalSet, split_by_fraction

# The splits of the embedded sets are part of the benchmark, so they never depend on
# the experiment's seed.
_SPLIT_SEED = 0


def _examples(inputs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"input": inputs.astype(np.float32), "label": labels.astype(np.int32)}


def _ood(inputs: np.ndarray) -> EvalSet:
    labels = np.full(len(inputs), -1, np.int32)  # OOD examples have no class.
    return EvalSet(ArraySource(_examples(inputs, labels)), is_ood=True)


def two_moons(
    num_train: int = 1000,
    num_test: int = 500,
    noise: float = 0.1,
    num_ood: int = 500,
    ood_radius: tuple[float, float] = (3.0, 5.0),
    plot_resolution: int = 100,
) -> Dataset:
    """Two moons in the plane; the OOD set lies on an annulus around the data's centre.

    ``plot_resolution`` > 0 adds the probe ``uncertainty_surface`` (a
    ``plot_resolution``-square grid over the data and the OOD ring); 0 draws nothing.
    """
    x, y = sklearn_datasets.make_moons(num_train + num_test, noise=noise, random_state=0)
    train, test = split_by_fraction(
        _examples(x, y), [num_train / len(x), num_test / len(x)], _SPLIT_SEED
    )
    rng = np.random.default_rng(_SPLIT_SEED)
    angle = rng.uniform(0, 2 * np.pi, num_ood)
    radius = rng.uniform(*ood_radius, num_ood)
    centre = np.array([0.5, 0.25])
    far = centre + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    extent = ood_radius[1] + 0.5
    bounds = (centre[0] - extent, centre[0] + extent, centre[1] - extent, centre[1] + extent)
    probes = ()
    if plot_resolution > 0:
        points = train.arrays
        surface = uncertainty_surface(
            "uncertainty_surface", bounds, plot_resolution, points["input"], points["label"]
        )
        probes = (surface,)
    return Dataset(
        train=train,
        eval_sets={"test": EvalSet(test), "ood_far": _ood(far)},
        num_classes=2,
        input_shape=(2,),
        probes=probes,
    )


def digits(num_ood: int = 360) -> Dataset:
    """8x8 digits as [8, 8, 1] images in [0, 1]; uniform-noise images are OOD."""
    bunch = sklearn_datasets.load_digits()
    images = (bunch.images / 16.0)[..., None]  # [N, 8, 8] -> [N, 8, 8, 1]
    train, validation, test = split_by_fraction(
        _examples(images, bunch.target), [0.7, 0.1, 0.2], _SPLIT_SEED
    )
    noise = np.random.default_rng(_SPLIT_SEED).uniform(size=(num_ood, 8, 8, 1))
    return Dataset(
        train=train,
        eval_sets={
            "validation": EvalSet(validation),
            "test": EvalSet(test),
            "ood_noise": _ood(noise),
        },
        num_classes=10,
        input_shape=(8, 8, 1),
    )

"""Datasets that ship with the code: nothing to download, ready on any machine.

* ``two_moons``: scikit-learn's two interleaving half circles, with OOD sets on rings
  around them: ``ood_far`` (radius 3-5 from the data's centre, the classic
  distance-awareness picture) and ``ood_near`` (radius 2-2.5, just outside the data);
  a run on it also draws its predictive uncertainty over the plane (``data.plots``).
* ``digits``: scikit-learn's 1,797 8x8 handwritten digits, pixel values scaled to
  [0, 1], in a fixed 70/10/20 train/validation/test split. OOD sets: ``ood_noise``
  (uniform-noise images, far) and, when ``held_out_classes`` is set, ``ood_heldout``
  (every image of those classes, which are left out of training: near OOD).
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as sklearn_datasets

from relbench.data.plots import uncertainty_surface
from relbench.data.sources import ArraySource, Dataset, EvalSet, split_by_fraction
from relbench.errors import UsageError

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
    near_ood_radius: tuple[float, float] = (2.0, 2.5),
    plot_resolution: int = 100,
) -> Dataset:
    """Two moons in the plane; the OOD sets lie on annuli around the data's centre.

    ``plot_resolution`` > 0 adds the probe ``uncertainty_surface`` (a
    ``plot_resolution``-square grid over the data and the OOD rings); 0 draws nothing.
    """
    x, y = sklearn_datasets.make_moons(num_train + num_test, noise=noise, random_state=0)
    train, test = split_by_fraction(
        _examples(x, y), [num_train / len(x), num_test / len(x)], _SPLIT_SEED
    )
    rng = np.random.default_rng(_SPLIT_SEED)
    centre = np.array([0.5, 0.25])

    def annulus(radii):
        angle = rng.uniform(0, 2 * np.pi, num_ood)
        radius = rng.uniform(*radii, num_ood)
        return centre + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)

    far = annulus(ood_radius)
    near = annulus(near_ood_radius)
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
        eval_sets={"test": EvalSet(test), "ood_far": _ood(far), "ood_near": _ood(near)},
        num_classes=2,
        input_shape=(2,),
        probes=probes,
    )


def digits(num_ood: int = 360, held_out_classes: tuple[int, ...] = ()) -> Dataset:
    """8x8 digits as [8, 8, 1] images in [0, 1]; uniform-noise images are OOD.

    Args:
      num_ood: the number of noise images.
      held_out_classes: digits left out of every labelled split and used as the near-OOD
        set ``ood_heldout``; the other digits keep their order, relabelled ``0..K-1``.
    """
    if not set(held_out_classes) <= set(range(10)) or len(held_out_classes) > 8:
        raise UsageError(
            f"digits held_out_classes {tuple(held_out_classes)} must be at most 8 of the "
            "digits 0..9; fix config.dataset.held_out_classes"
        )
    bunch = sklearn_datasets.load_digits()
    images = (bunch.images / 16.0)[..., None]  # [N, 8, 8] -> [N, 8, 8, 1]
    held_out = np.isin(bunch.target, held_out_classes)
    kept_classes = [c for c in range(10) if c not in held_out_classes]
    labels = np.searchsorted(kept_classes, bunch.target[~held_out])
    train, validation, test = split_by_fraction(
        _examples(images[~held_out], labels), [0.7, 0.1, 0.2], _SPLIT_SEED
    )
    noise = np.random.default_rng(_SPLIT_SEED).uniform(size=(num_ood, 8, 8, 1))
    eval_sets = {
        "validation": EvalSet(validation),
        "test": EvalSet(test),
        "ood_noise": _ood(noise),
    }
    if held_out.any():
        eval_sets["ood_heldout"] = _ood(images[held_out])
    return Dataset(
        train=train,
        eval_sets=eval_sets,
        num_classes=len(kept_classes),
        input_shape=(8, 8, 1),
    )

"""Embedded regression datasets (``task="regression"``): targets are ``[N, O]`` floats.

* ``diabetes``: scikit-learn's diabetes data, 442 patients, 10 features, one target
  (disease progression after a year), in a fixed 70/10/20 train/validation/test
  split. Features and target are standardized with the *training* mean and standard
  deviation, so every metric is in units of the target's training standard deviation.
* ``heteroscedastic_toy``: a 1-D problem whose noise is known,
  ``y = toy_mean(x) + toy_noise_std(x) * eps``, ``eps ~ N(0, 1)``, ``x ~ U(-pi, pi)``;
  the noise standard deviation ranges from 0.1 (at ``x = -pi/2``) to 0.6 (at
  ``x = pi/2``). Its OOD set lies on ``1 <= |x| - pi <= 3``, outside the data.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as sklearn_datasets

from relbench.data.sources import ArraySource, Dataset, EvalSet, split_by_fraction

_SPLIT_SEED = 0  # the splits are part of the benchmark: independent of the run's seed.


def _examples(inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    return {"input": inputs.astype(np.float32), "label": targets.astype(np.float32)}


def diabetes() -> Dataset:
    """scikit-learn's diabetes regression data, standardized with training statistics."""
    x, y = sklearn_datasets.load_diabetes(return_X_y=True)
    splits = split_by_fraction(_examples(x, y[:, None]), [0.7, 0.1, 0.2], _SPLIT_SEED)
    train = splits[0].arrays
    x_mean, x_std = train["input"].mean(0), train["input"].std(0)
    y_mean, y_std = train["label"].mean(0), train["label"].std(0)
    train, validation, test = (
        ArraySource(
            _examples((s.arrays["input"] - x_mean) / x_std, (s.arrays["label"] - y_mean) / y_std)
        )
        for s in splits
    )
    return Dataset(
        train=train,
        eval_sets={"validation": EvalSet(validation), "test": EvalSet(test)},
        num_classes=1,
        input_shape=(10,),
        task="regression",
    )


def toy_mean(x: np.ndarray) -> np.ndarray:
    """The toy's regression function ``sin(2x)``."""
    return np.sin(2 * x)


def toy_noise_std(x: np.ndarray) -> np.ndarray:
    """The toy's true noise standard deviation ``0.1 + 0.25 (1 + sin x)``."""
    return 0.1 + 0.25 * (1 + np.sin(x))


def heteroscedastic_toy(num_train: int = 1000, num_test: int = 1000, num_ood: int = 200) -> Dataset:
    """1-D regression with known input-dependent noise (see the module docstring)."""
    rng = np.random.default_rng(_SPLIT_SEED)

    def draw(x):
        y = toy_mean(x) + toy_noise_std(x) * rng.standard_normal(x.shape)
        return ArraySource(_examples(x[:, None], y[:, None]))  # [N] -> [N, 1]

    train = draw(rng.uniform(-np.pi, np.pi, num_train))
    test = draw(rng.uniform(-np.pi, np.pi, num_test))
    far = np.pi + rng.uniform(1.0, 3.0, num_ood)
    ood = draw(far * rng.choice([-1.0, 1.0], num_ood))
    return Dataset(
        train=train,
        eval_sets={"test": EvalSet(test), "ood_far": EvalSet(ood, is_ood=True)},
        num_classes=1,
        input_shape=(1,),
        task="regression",
    )

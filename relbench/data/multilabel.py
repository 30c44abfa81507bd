"""Embedded multi-label data (``task="multilabel"``): labels are ``[N, K]`` floats in {0, 1}.

* ``multilabel_toy``: scikit-learn's ``make_multilabel_classification`` (a bag-of-words
  model: each example draws its number of labels, its labels, then word counts from
  their mixture; some examples have no label), drawn with a fixed seed, in a fixed
  70/10/20 train/validation/test split. Features are standardized with the *training*
  mean and standard deviation. OOD sets: ``ood_far``, the test features each shifted by
  ``ood_shift`` training standard deviations with a random sign per entry (far outside
  the training range), and ``ood_shuffled``, the test features with every column
  permuted on its own (the training marginals, none of their joint structure: near).
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as sklearn_datasets

from relbench.data.sources import ArraySource, Dataset, EvalSet, split_by_fraction
from relbench.errors import UsageError

_DATA_SEED = 0  # the data and splits are part of the benchmark: not the run's seed.


def _examples(inputs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"input": inputs.astype(np.float32), "label": labels.astype(np.float32)}


def _ood(inputs: np.ndarray, num_labels: int) -> EvalSet:
    labels = np.full((len(inputs), num_labels), -1.0)  # OOD examples have no labels.
    return EvalSet(ArraySource(_examples(inputs, labels)), is_ood=True)


def multilabel_toy(
    num_examples: int = 1500,
    num_features: int = 20,
    num_labels: int = 6,
    average_labels: int = 2,
    ood_shift: float = 5.0,
) -> Dataset:
    """``make_multilabel_classification`` data, standardized with training statistics.

    Args:
      num_examples: examples over the three splits.
      num_features: F, word counts per example.
      num_labels: K, the labels (independent sigmoids of the Bernoulli likelihood).
      average_labels: the mean number of labels per example (a Poisson mean).
      ood_shift: how many training standard deviations ``ood_far`` is shifted by.
    """
    if num_examples < 20 or min(num_features, num_labels, average_labels) < 1:
        raise UsageError(
            f"multilabel_toy needs num_examples >= 20, num_features >= 1, num_labels >= 1 "
            f"and average_labels >= 1; got {num_examples}, {num_features}, {num_labels}, "
            f"{average_labels}: fix config.dataset"
        )
    x, y, *_ = sklearn_datasets.make_multilabel_classification(
        n_samples=num_examples,
        n_features=num_features,
        n_classes=num_labels,
        n_labels=average_labels,
        random_state=_DATA_SEED,
    )
    splits = split_by_fraction(_examples(x, np.asarray(y)), [0.7, 0.1, 0.2], _DATA_SEED)
    train_x = splits[0].arrays["input"]
    mean, std = train_x.mean(0), np.maximum(train_x.std(0), 1e-6)
    train, validation, test = (
        ArraySource(_examples((s.arrays["input"] - mean) / std, s.arrays["label"])) for s in splits
    )
    test_x = test.arrays["input"]
    rng = np.random.default_rng(_DATA_SEED)
    far = test_x + ood_shift * rng.choice([-1.0, 1.0], test_x.shape)
    shuffled = np.stack([rng.permutation(column) for column in test_x.T], axis=1)
    return Dataset(
        train=train,
        eval_sets={
            "validation": EvalSet(validation),
            "test": EvalSet(test),
            "ood_far": _ood(far, num_labels),
            "ood_shuffled": _ood(shuffled, num_labels),
        },
        num_classes=num_labels,
        input_shape=(num_features,),
        task="multilabel",
    )

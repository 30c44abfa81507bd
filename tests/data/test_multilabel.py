"""The embedded multi-label dataset: fixed splits of scikit-learn's generator, training
statistics, OOD sets outside the data, and labels checked as [N, K] 0/1 indicators."""

import numpy as np
import pytest
from sklearn import datasets as sklearn_datasets

from relbench import data
from relbench.data import ArraySource, TrainBatches, eval_batches
from relbench.errors import UsageError

SPLITS = ("train", "validation", "test")


def arrays(dataset, name):
    return dataset.train.arrays if name == "train" else dataset.eval_sets[name].source.arrays


def test_splits_are_fixed_and_standardized_with_training_statistics():
    dataset = data.make("multilabel_toy")
    assert dataset.task == "multilabel" and dataset.num_classes == 6
    assert dataset.input_shape == (20,) and dataset.label_classes is None
    assert dataset.num_labels == 6
    assert [s.is_ood for s in dataset.eval_sets.values()] == [False, False, True, True]
    # The documented construction: scikit-learn's draw with seed 0, a 70/10/20 split of
    # a seed-0 permutation, every split standardized with the training rows' statistics.
    x, y = sklearn_datasets.make_multilabel_classification(
        n_samples=1500, n_features=20, n_classes=6, n_labels=2, random_state=0
    )
    order = np.random.default_rng(0).permutation(1500)
    rows = dict(zip(SPLITS, np.split(order, [1050, 1200]), strict=True))
    mean, std = x[rows["train"]].mean(0), x[rows["train"]].std(0)
    for name in SPLITS:
        split = arrays(dataset, name)
        assert split["label"].dtype == np.float32 and split["input"].dtype == np.float32
        np.testing.assert_array_equal(split["label"], y[rows[name]])
        expected = (x[rows[name]] - mean) / std
        np.testing.assert_allclose(split["input"], expected, rtol=1e-5, atol=1e-5)
    train = dataset.train.arrays["input"]
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-4)
    assert 0.2 < y.mean() < 0.5  # every label is frequent enough to learn and rank


def test_ood_sets_lie_outside_the_training_range():
    dataset = data.make("multilabel_toy", ood_shift=5.0)
    train = dataset.train.arrays["input"]
    test = dataset.eval_sets["test"].source.arrays["input"]
    far = dataset.eval_sets["ood_far"].source.arrays
    np.testing.assert_allclose(np.abs(far["input"] - test), 5.0, atol=1e-5)
    low, high = train.min(0), train.max(0)
    outside = (far["input"] < low) | (far["input"] > high)
    assert outside.mean() > 0.5  # most entries lie beyond every training value
    shuffled = dataset.eval_sets["ood_shuffled"].source.arrays["input"]
    np.testing.assert_array_equal(np.sort(shuffled, 0), np.sort(test, 0))  # same marginals
    assert not np.array_equal(shuffled, test)
    assert far["label"].shape == (300, 6) and np.all(far["label"] == -1)


def _source(labels):
    return ArraySource({"input": np.zeros((len(labels), 2), np.float32), "label": labels})


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([[0, 1, 0], [1, 2, 0]], np.float32), r"label value 2\.0 in .* is not 0 or 1"),
        (np.array([[0, 1], [1, 0]], np.float32), r"labels of shape \(2, 2\) .* \[N, 3\]"),
        (np.array([1.0, 0.0], np.float32), r"labels of shape \(2,\) .* \[N, 3\]"),
        (np.array([[0, 1, 0], [1, 1, 0]], np.int32), r"labels of dtype int32 .* float"),
        (np.array([[0, np.nan, 0], [1, 1, 0]], np.float32), r"label value nan"),
    ],
)
def test_bad_multilabels_are_one_usage_error_line(labels, message):
    for read in (
        lambda: TrainBatches(_source(labels), 2, 0, None, num_labels=3)(0),
        lambda: list(eval_batches(_source(labels), 2, None, num_labels=3)),
    ):
        with pytest.raises(UsageError, match=message) as error:
            read()
        assert "\n" not in str(error.value)


def test_good_multilabels_pass_and_padding_rows_are_not_checked():
    labels = np.array([[0, 1, 0], [1, 1, 1], [0, 0, 0]], np.float32)
    assert TrainBatches(_source(labels), 3, 0, None, num_labels=3)(0)["label"].shape == (3, 3)
    batches = list(eval_batches(_source(labels), 4, None, num_labels=3))
    assert [b["mask"].tolist() for b in batches] == [[1, 1, 1, 0]]


def test_bad_dataset_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="multilabel_toy needs num_examples >= 20"):
        data.make("multilabel_toy", num_examples=5)

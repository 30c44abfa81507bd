"""Multi-rater datasets: simulated raters on digits, CIFAR-10H's clear error where missing."""

import numpy as np
import pytest

from relbench import data as data_lib
from relbench.data.label_noise import PARTNER, noise_rate
from relbench.errors import UsageError


def test_multirater_digits_carries_counts_shares_and_plurality_labels():
    dataset = data_lib.make("multirater_digits", num_raters=7)
    clean = data_lib.make("digits")
    for name in ("validation", "test"):
        rated = dataset.eval_sets[name].source.arrays
        truth = clean.eval_sets[name].source.arrays["label"]
        counts = rated["rater_counts"]
        assert counts.shape == (len(truth), 10) and np.all(counts.sum(1) == 7)
        np.testing.assert_allclose(rated["soft_label"], counts / 7, rtol=1e-6)
        np.testing.assert_array_equal(rated["label"], counts.argmax(1))
        # Votes go to the true digit or its confusable partner only.
        other = counts.sum(1) - counts[np.arange(len(truth)), truth]
        assert np.all(other == counts[np.arange(len(truth)), PARTNER[truth]])
    train = dataset.train.arrays
    rho = noise_rate(train["input"], 0.45)
    truth = clean.train.arrays["label"]
    disagreement = 1 - train["rater_counts"][np.arange(len(truth)), truth] / 7
    # Input-dependent confusion: faint digits (rho = 0) get unanimous votes, heavy ones
    # lose about the mean rater confusion, rho x mean skill (1).
    assert np.all(disagreement[rho == 0] == 0)
    heavy = rho >= 0.4
    assert disagreement[heavy].mean() == pytest.approx(rho[heavy].mean(), abs=0.05)
    assert "rater_counts" not in dataset.eval_sets["ood_noise"].source.arrays


def test_cifar10h_where_not_prepared_is_one_error_naming_the_fix(tmp_path):
    with pytest.raises(UsageError, match="tfds build"):
        data_lib.make("cifar10h", data_dir=str(tmp_path))

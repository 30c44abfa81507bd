"""The embedded regression and label-noise datasets have the noise they claim."""

import numpy as np

from relbench import data as data_lib
from relbench.data.label_noise import PARTNER, noise_rate, true_label_distribution
from relbench.data.regression import toy_mean, toy_noise_std


def test_noisy_digits_flips_to_the_partner_at_the_stated_rate():
    clean = data_lib.make("digits")
    noisy = data_lib.make("noisy_digits", max_noise_rate=0.45)
    images, labels = clean.train.arrays["input"], clean.train.arrays["label"]
    noisy_labels = noisy.train.arrays["label"]
    np.testing.assert_array_equal(noisy.train.arrays["input"], images)
    flipped = noisy_labels != labels
    np.testing.assert_array_equal(noisy_labels[flipped], PARTNER[labels[flipped]])
    rho = noise_rate(images, 0.45)
    assert rho.min() == 0.0 and rho.max() == 0.45
    # The number of flips is a sum of Bernoulli(rho_i): within 4 standard deviations.
    assert abs(flipped.sum() - rho.sum()) < 4 * np.sqrt(np.sum(rho * (1 - rho)))
    assert "soft_label" not in noisy.train.arrays
    test, clean_test = noisy.eval_sets["test"].source.arrays, clean.eval_sets["test"].source
    expected = true_label_distribution(test["input"], clean_test.arrays["label"], 0.45)
    np.testing.assert_allclose(test["soft_label"], expected, atol=1e-7)
    np.testing.assert_allclose(test["soft_label"].sum(-1), 1.0, atol=1e-6)


def test_raters_votes_are_soft_training_labels():
    noisy = data_lib.make("noisy_digits", num_raters=5)
    votes = noisy.train.arrays["soft_label"] * 5
    np.testing.assert_allclose(votes, np.round(votes), atol=1e-5)
    np.testing.assert_allclose(votes.sum(-1), 5.0, atol=1e-5)
    first = noisy.train.arrays["label"]
    assert np.all(votes[np.arange(len(first)), first] >= 1)  # the label is one of the votes


def test_toy_residuals_are_standard_normal_after_scaling_by_the_true_noise():
    toy = data_lib.make("heteroscedastic_toy")
    assert toy.task == "regression" and toy.label_classes is None
    x, y = toy.train.arrays["input"][:, 0], toy.train.arrays["label"][:, 0]
    z = (y - toy_mean(x)) / toy_noise_std(x)
    n = len(z)
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert np.all(np.abs(toy.eval_sets["ood_far"].source.arrays["input"]) >= np.pi + 1)


def test_diabetes_is_standardized_with_training_statistics():
    diabetes = data_lib.make("diabetes")
    assert diabetes.task == "regression" and diabetes.num_classes == 1
    sizes = [len(diabetes.train)] + [len(s.source) for s in diabetes.eval_sets.values()]
    assert sizes == [309, 45, 88]
    train = diabetes.train.arrays
    np.testing.assert_allclose(train["label"].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train["input"].std(0), 1.0, atol=1e-5)
    assert train["label"].shape == (309, 1) and train["label"].dtype == np.float32

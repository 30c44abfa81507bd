"""Regression and label-noise experiments through the whole loop, on 4 fake devices."""

import math

import pytest

from experiments import diabetes_mlp, heteroscedastic_toy_mlp, noisy_digits_mlp
from relbench.train.loop import train_and_evaluate

REGRESSION = {"nll", "rmse", "crps", "coverage_50", "coverage_90", "coverage_95"}
SOFT = {"soft_nll", "soft_kl", "soft_brier", "soft_ece"}


def test_mc_dropout_gaussian_regression_on_the_toy(tmp_path):
    config = heteroscedastic_toy_mlp.get_config("mc_dropout,smoke")
    results = train_and_evaluate(config, tmp_path)
    assert REGRESSION | {"interval_calibration_error"} <= set(results["test"])
    assert set(results["ood_far"]) == {"mean_predictive_std"}
    assert all(math.isfinite(v) for s in results.values() for v in s.values())


def test_diabetes_with_the_deterministic_gaussian_head(tmp_path):
    config = diabetes_mlp.get_config("deterministic,smoke")
    results = train_and_evaluate(config, tmp_path)
    assert REGRESSION <= set(results["validation"]) and REGRESSION <= set(results["test"])


@pytest.mark.parametrize(
    ("method", "overrides", "raters"),
    [
        # The link is the likelihood's (softmax for these classes); the sigmoid link of
        # the Bernoulli likelihood: tests/methods/test_likelihoods.py.
        ("heteroscedastic", {"parameter_efficient": True}, 3),
        ("heteroscedastic", {}, 0),
    ],
)
def test_heteroscedastic_on_noisy_digits(method, overrides, raters, tmp_path):
    config = noisy_digits_mlp.get_config(f"{method},smoke")
    with config.unlocked():
        config.dataset.num_raters = raters  # > 0: training batches carry vote shares
        for name, value in overrides.items():
            config.method[name] = value
    results = train_and_evaluate(config, tmp_path)
    assert SOFT <= set(results["test"]) and {"nll", "accuracy"} <= set(results["test"])
    assert not SOFT & set(results["ood_noise"])
    assert all(math.isfinite(v) for s in results.values() for v in s.values())

"""The likelihood as an axis: every method fits the regression data of diabetes_mlp.py
(and reports CRPS) or is refused with the one-line reason of ``methods.UNDEFINED``."""

import numpy as np
import pytest
from scipy import stats

from relbench import configs, data, methods
from relbench.errors import UsageError
from relbench.train.loop import train_and_evaluate


def prior_scores():
    """CRPS and NLL of N(0, 1) on the test targets (standardized by the training data's
    mean and deviation): what a model that learnt nothing about x scores."""
    y = data.make("diabetes").eval_sets["test"].source.arrays["label"][:, 0].astype(np.float64)
    crps = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / np.sqrt(np.pi)
    return float(np.mean(crps)), float(-np.mean(stats.norm.logpdf(y)))


@pytest.mark.parametrize("method", methods.METHODS.names())
def test_every_method_fits_diabetes_or_is_refused_with_the_reason(method, tmp_path):
    undefined = methods.UNDEFINED.get((method, "gaussian"))
    if undefined is not None:
        with pytest.raises(UsageError) as refused:
            train_and_evaluate(configs.load(f"experiments/diabetes_mlp.py:{method}"), tmp_path)
        assert "\n" not in str(refused.value) and str(refused.value).endswith(undefined)
        return
    config = configs.load(f"experiments/diabetes_mlp.py:{method}")
    with config.unlocked():
        config.train.num_epochs = 20.0
    results = train_and_evaluate(config, tmp_path)
    crps, nll = prior_scores()
    test = results["test"]
    assert {"crps", "nll", "rmse", "coverage_90"} <= set(test)
    assert test["crps"] < crps and test["nll"] < nll, (test["crps"], crps, test["nll"], nll)

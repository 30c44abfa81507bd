"""The likelihood as an axis: every method fits the regression data of diabetes_mlp.py
(and reports CRPS) and the multi-label data of multilabel_mlp.py, or is refused with the
one-line reason of ``methods.UNDEFINED``; each beats a model that learnt nothing about x.
The runs check what methods learn, not the sharding: they run on one device
(``tests.one_device``)."""

import numpy as np
import pytest
from scipy import stats

from relbench import configs, data, methods
from relbench.errors import UsageError
from relbench.train.loop import train_and_evaluate
from tests.metric_ranges import out_of_range
from tests.one_device import on_one_device


def prior_scores():
    """CRPS and NLL of N(0, 1) on the test targets (standardized by the training data's
    mean and deviation): what a model that learnt nothing about x scores."""
    y = data.make("diabetes").eval_sets["test"].source.arrays["label"][:, 0].astype(np.float64)
    crps = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / np.sqrt(np.pi)
    return float(np.mean(crps)), float(-np.mean(stats.norm.logpdf(y)))


def train_or_refused(method, likelihood, config_file, workdir, num_epochs) -> dict | None:
    """The results of the config's run of ``method`` for ``num_epochs``; None where the
    pairing is undefined, after checking it is refused with the one-line reason."""
    config = configs.load(f"experiments/{config_file}:{method}")
    undefined = methods.UNDEFINED.get((method, likelihood))
    if undefined is not None:
        with pytest.raises(UsageError) as error:
            on_one_device(train_and_evaluate, config, str(workdir))
        assert "\n" not in str(error.value) and str(error.value).endswith(undefined)
        return None
    with config.unlocked():
        config.train.num_epochs = num_epochs
    results = on_one_device(train_and_evaluate, config, str(workdir))
    assert not out_of_range(results), out_of_range(results)[:20]  # (the child's run)
    return results


@pytest.mark.parametrize("method", methods.METHODS.names())
def test_every_method_fits_diabetes_or_is_refused_with_the_reason(method, tmp_path):
    results = train_or_refused(method, "gaussian", "diabetes_mlp.py", tmp_path, 20.0)
    if results is None:
        return
    crps, nll = prior_scores()
    test = results["test"]
    assert {"crps", "nll", "rmse", "coverage_90"} <= set(test)
    assert test["crps"] < crps and test["nll"] < nll, (test["crps"], crps, test["nll"], nll)


def frequency_baseline() -> dict[str, float]:
    """The test metrics of predicting every label's training frequency for every input."""
    dataset = data.make("multilabel_toy")
    frequency = dataset.train.arrays["label"].astype(np.float64).mean(0)
    y = dataset.eval_sets["test"].source.arrays["label"].astype(np.float64)
    nll = -np.sum(y * np.log(frequency) + (1 - y) * np.log(1 - frequency), axis=1)
    return {
        "nll": float(np.mean(nll)),
        "label_accuracy": float(np.mean(y == (frequency > 0.5))),
        "mean_average_precision": float(np.mean(y.mean(0))),  # AP of a constant score
        "macro_auroc": 0.5,
    }


@pytest.mark.parametrize("method", methods.METHODS.names())
def test_every_method_fits_multilabel_data_or_is_refused_with_the_reason(method, tmp_path):
    results = train_or_refused(method, "bernoulli", "multilabel_mlp.py", tmp_path, 8.0)
    if results is None:
        return
    test, baseline = results["test"], frequency_baseline()
    assert test["nll"] < baseline["nll"], (test["nll"], baseline["nll"])
    for name in ("label_accuracy", "mean_average_precision", "macro_auroc"):
        assert test[name] > baseline[name], (name, test[name], baseline[name])
    for ood in ("ood_far", "ood_shuffled"):
        assert np.isfinite(results[ood]["auroc/entropy"]) and "nll" not in results[ood]

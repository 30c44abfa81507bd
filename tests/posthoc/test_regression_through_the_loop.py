"""The regression post-hoc steps compose with the one loop on diabetes, with a single and
a multi-member method. (Every classification step with every method: the learning gate,
tests/experiments/test_learning_gate.py.)"""

import numpy as np
import pytest

from relbench import configs
from relbench.train.loop import train_and_evaluate


@pytest.mark.parametrize(
    "method, step",
    [("deterministic", "conformal_residual"), ("deep_ensemble", "conformal_normalized")],
)
def test_regression_intervals_through_the_loop(method, step, tmp_path):
    config = configs.load(f"experiments/diabetes_mlp.py:{method},smoke")
    with config.unlocked():
        config.posthoc = (step,)
    results = train_and_evaluate(config, tmp_path)
    test = results["test"]
    assert test["interval_coverage"] > 0.75, test["interval_coverage"]
    assert (
        np.isfinite(test["winkler_score"]) and test["winkler_score"] >= test["interval_width"] > 0
    )

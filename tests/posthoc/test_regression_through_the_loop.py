"""The regression post-hoc steps compose with the one loop on diabetes, with a single and
a multi-member method; what ODIN and CQR ask of a method (input gradients of its
prediction, the quantile head) is traced for every method, without compiling. (Every
classification step with every method, trained: the learning gate,
tests/experiments/test_learning_gate.py; ODIN's loop run: test_odin.py.)"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import configs, methods
from relbench.train import loop
from relbench.train.loop import train_and_evaluate


@pytest.mark.parametrize(
    "method, steps, arg",
    [
        ("deterministic", ("conformal_residual", "conformal_cqr"), ""),
        ("deep_ensemble", ("conformal_normalized",), ",smoke"),
    ],
)
def test_regression_intervals_through_the_loop(method, steps, arg, tmp_path):
    """The deterministic run trains the pinball-loss quantile head through the loop (the
    config's full 50 epochs: seconds) and reports CQR's intervals, the residual step's
    fitted beside them in posthoc.json; the ensemble's are the normalized ones."""
    config = configs.load(f"experiments/diabetes_mlp.py:{method}{arg}")
    with config.unlocked():
        config.posthoc = steps
        config.likelihood.quantile_coverage = 0.9 if "conformal_cqr" in steps else 0.0
    results = train_and_evaluate(config, tmp_path)
    test = results["test"]
    assert test["interval_coverage"] > 0.75, test["interval_coverage"]
    assert (
        np.isfinite(test["winkler_score"]) and test["winkler_score"] >= test["interval_width"] > 0
    )
    thresholds = {
        s["name"]: s["fitted"]["threshold"][0]
        for s in json.loads((tmp_path / "posthoc.json").read_text())["steps"]
    }
    assert all(np.isfinite(t) for t in thresholds.values()), thresholds
    if "conformal_cqr" in steps:
        # Measured: coverage 0.932 of the 88 test patients at width 2.74 (in target
        # standard deviations), CQR's threshold 0.15: the head's own 90% interval nearly
        # covered already, so the head learned its quantiles.
        assert 0.8 <= test["interval_coverage"] <= 1.0, test["interval_coverage"]
        assert abs(thresholds["conformal_cqr"]) < 0.25 * test["interval_width"], thresholds


@pytest.mark.parametrize(
    "experiment, step", [("digits_mlp", "odin"), ("diabetes_mlp", "conformal_cqr")]
)
def test_every_method_traces_the_model_hooks_of_odin_and_cqr(experiment, step):
    """What these two steps ask of a method, traced (shapes only, nothing compiled) for
    every method of the table: ODIN differentiates the method's prediction in its
    inputs; CQR needs the quantile head, which every method builds from the likelihood."""
    for method in methods.METHODS.names():
        if experiment == "diabetes_mlp" and (method, "gaussian") in methods.UNDEFINED:
            continue
        config = configs.load(f"experiments/{experiment}.py:{method},smoke")
        with config.unlocked():
            config.posthoc = (step,)
            if step == "conformal_cqr":
                config.likelihood.quantile_coverage = 0.9
        exp = loop.build(config)
        state = jax.eval_shape(functools.partial(loop.init_state, exp), jax.random.key(0))
        inputs = jax.ShapeDtypeStruct((3, *exp.dataset.input_shape), jnp.float32)
        predict = functools.partial(loop.predict_outputs, exp)
        logits, extras = jax.eval_shape(predict, state, inputs, jax.random.key(1))
        members = logits.shape[0]
        wanted = (
            {"odin/max_prob": (1, 3, 1)}
            if step == "odin"
            else {k: (members, 3, 1) for k in ("quantile_lower", "quantile_upper")}
        )
        assert {k: extras[k].shape for k in wanted} == wanted, method

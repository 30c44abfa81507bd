"""Temperature scaling: the fitted T against a fine grid search, and through the loop
on a deep ensemble (validation NLL after <= before; accuracy unchanged)."""

import json

import jax
import numpy as np
import pytest
from scipy import special

from relbench import configs, posthoc
from relbench.errors import UsageError
from relbench.train import loop
from relbench.train.ensemble_eval import load_run
from relbench.train.loop import build, train_and_evaluate
from relbench.train.sharding import data_mesh


def numpy_nll(temperature, logits, targets):
    """The ensemble's predictive NLL at T, float64: -mean log 1/M sum_m softmax(z/T)."""
    log_p = special.log_softmax(logits / temperature, axis=-1)  # [M, N, K]
    log_predictive = special.logsumexp(log_p, axis=0) - np.log(len(logits))
    return -np.mean(np.sum(targets * log_predictive, axis=-1))


def grid_search(logits, targets, low=0.05, high=20.0):
    """The best T on a grid of 2001 log-spaced points, then on 4001 points between its
    neighbours: a resolution far below 1e-3 in T."""
    coarse = np.exp(np.linspace(np.log(low), np.log(high), 2001))
    best = int(np.argmin([numpy_nll(t, logits, targets) for t in coarse]))
    fine = np.linspace(coarse[max(best - 1, 0)], coarse[min(best + 1, 2000)], 4001)
    return fine[int(np.argmin([numpy_nll(t, logits, targets) for t in fine]))]


def synthetic(seed, members=3, n=400, k=5, sharpness=4.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    signal = np.eye(k)[labels] * 1.5 + rng.normal(size=(n, k))
    logits = sharpness * (signal[None] + 0.5 * rng.normal(size=(members, n, k)))
    return logits.astype(np.float32), labels


@pytest.mark.parametrize("sharpness", [4.0, 0.3])  # over- and underconfident
def test_fitted_temperature_equals_a_fine_grid_search(sharpness):
    logits, labels = synthetic(0, sharpness=sharpness)
    step = posthoc.make("temperature_scaling")
    fitted = jax.jit(step.fit)((logits, {}), {"label": labels})
    want = grid_search(logits.astype(np.float64), np.eye(5)[labels])
    assert abs(float(fitted["temperature"]) - want) < 1e-3
    assert (want > 1.0) == (sharpness > 1.0)  # the data are what the case says


def test_soft_labels_are_the_targets_where_given():
    logits, labels = synthetic(1)
    soft = special.softmax(np.random.default_rng(2).normal(size=(len(labels), 5)), axis=-1)
    step = posthoc.make("temperature_scaling")
    fitted = step.fit((logits, {}), {"label": labels, "soft_label": soft.astype(np.float32)})
    assert abs(float(fitted["temperature"]) - grid_search(logits.astype(np.float64), soft)) < 1e-3


def test_apply_divides_the_logits_and_keeps_the_extras():
    logits, _ = synthetic(3)
    extras = {"features": np.ones((3, 400, 2), np.float32)}
    scaled, kept = posthoc.make("temperature_scaling").apply((logits, extras), {"temperature": 2.0})
    np.testing.assert_allclose(scaled, logits / 2.0)
    assert kept is extras


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    config = configs.load("experiments/digits_mlp.py:deep_ensemble,smoke")
    with config.unlocked():
        config.train.num_epochs = 3.0
        config.posthoc = ("temperature_scaling",)
    workdir = tmp_path_factory.mktemp("ensemble")
    return workdir, train_and_evaluate(config, workdir)


def test_deep_ensemble_with_temperature_scaling_on_digits(ensemble_run):
    workdir, results = ensemble_run
    validation, test = results["validation"], results["test"]
    assert validation["nll"] <= validation["raw/nll"]
    assert test["accuracy"] == test["raw/accuracy"]  # a temperature keeps the ranking
    assert validation["accuracy"] > 0.8  # it learnt: 8 classes, chance 0.125
    # The fitted T is the grid search's on the run's own validation outputs.
    (fitted,) = json.loads((workdir / "posthoc.json").read_text())["steps"]
    run = load_run(workdir, data_mesh())
    source = run.exp.dataset.eval_sets["validation"].source
    batch = source.read(np.arange(len(source)))
    logits, _ = run.exp.method.predict_fn(run.exp.model.apply, run.state, batch["input"], None)
    assert logits.shape[0] == 4  # the members
    want = grid_search(np.asarray(logits, np.float64), np.eye(logits.shape[-1])[batch["label"]])
    assert abs(fitted["fitted"]["temperature"] - want) < 1e-3


def test_a_step_on_data_it_does_not_fit_is_refused():
    config = configs.load("experiments/diabetes_mlp.py:deterministic,smoke")
    with config.unlocked():
        config.posthoc = ("temperature_scaling",)
    with pytest.raises(UsageError, match="defined for classification datasets.*regression"):
        build(config)
    config = configs.load("experiments/two_moons_mlp.py:deterministic,smoke")
    with config.unlocked():
        config.posthoc = ("temperature_scaling",)
    with pytest.raises(UsageError, match="fits on 'validation'.*one of: test"):
        build(config)


def test_unknown_steps_and_hyperparameters_name_themselves():
    config = configs.load("experiments/digits_mlp.py:deterministic,smoke")
    with config.unlocked():
        config.posthoc = ("temperature_scalling",)
    with pytest.raises(UsageError, match="unknown post-hoc step 'temperature_scalling'"):
        build(config)
    with config.unlocked():
        config.posthoc = ("temperature_scaling",)
        config.posthoc_hparams.temperature_scaling.grid = 3
    with pytest.raises(UsageError, match=r"config\.posthoc_hparams\.temperature_scaling\.grid"):
        build(config)
    with pytest.raises(UsageError, match="min_temperature < max_temperature"):
        posthoc.make("temperature_scaling", min_temperature=2.0, max_temperature=1.0)


def test_steps_fit_in_order_on_one_forward_pass_of_their_split(tmp_path, monkeypatch):
    """Two temperature scalings on the validation set: the split is predicted once, and
    the second step, fitted on the first one's outputs, finds nothing left to fix."""
    calls = []
    set_outputs = loop.set_outputs

    def counted(*args, **kwargs):
        calls.append(args[3])  # the split
        return set_outputs(*args, **kwargs)

    monkeypatch.setattr(loop, "set_outputs", counted)
    config = configs.load("experiments/digits_mlp.py:mc_dropout,smoke")
    with config.unlocked():
        config.posthoc = ("temperature_scaling", "temperature_scaling")
    loop.train_and_evaluate(config, tmp_path)
    assert calls == ["validation"]
    first, second = json.loads((tmp_path / "posthoc.json").read_text())["steps"]
    assert first["name"] == second["name"] == "temperature_scaling"
    assert first["fitted"]["temperature"] != pytest.approx(1.0, abs=0.05)
    assert second["fitted"]["temperature"] == pytest.approx(1.0, abs=1e-3)


def test_a_fit_split_without_errors_stops_at_the_bound_and_says_so(caplog):
    labels = np.random.default_rng(4).integers(0, 5, 200)
    separable = np.eye(5, dtype=np.float32)[labels][None] * 0.5  # right, barely confident
    step = posthoc.make("temperature_scaling", min_temperature=0.1)
    with caplog.at_level("WARNING"):
        fitted = jax.block_until_ready(step.fit((separable, {}), {"label": labels}))
    assert float(fitted["temperature"]) == pytest.approx(0.1, rel=1e-3)
    assert "stopped at the end of its range" in caplog.text

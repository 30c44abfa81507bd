"""Adaptation: a run started from a finished run's parameters, with other layer types,
and k-shot linear evaluation on a finished run's frozen features."""

import jax
import numpy as np
import pytest

from experiments import digits_mlp
from relbench.errors import UsageError
from relbench.tasks import few_shot
from relbench.train import init_from
from relbench.train.checkpoints import load_final_params
from relbench.train.loop import build, init_state, train_and_evaluate


def _config(method, **init):
    config = digits_mlp.get_config(f"{method},smoke")
    with config.unlocked():
        config.evaluation.shift_suite = ""
        config.dataset.held_out_classes = ()
        if init:
            config.init_from = init_from.init_from_config(**init)
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("deterministic")
    train_and_evaluate(_config("deterministic"), workdir)
    return workdir


def _fresh_params(config, shapes_only=False):
    exp = build(config)
    key = jax.random.key(config.seed)
    if shapes_only:
        return jax.eval_shape(lambda k: init_state(exp, k), key).params
    return jax.jit(lambda k: init_state(exp, k))(key).params


def test_loaded_values_equal_the_saved_ones_and_the_new_head_is_initialised(finished):
    saved = init_from.flat_params(load_final_params(finished))
    fresh = _fresh_params(_config("heteroscedastic"))
    merged, report = init_from.merge(fresh, init_from.read_params(str(finished)))
    merged, fresh = init_from.flat_params(merged), init_from.flat_params(fresh)
    assert report["loaded"] == ["Dense_0/bias", "Dense_0/kernel"]
    assert report["unused"] == ["DenseHead_0/Dense_0/bias", "DenseHead_0/Dense_0/kernel"]
    for path, value in merged.items():
        expected = saved[path] if path in report["loaded"] else fresh[path]
        np.testing.assert_array_equal(np.asarray(value), np.asarray(expected), path)
    # An orbax step folder reads the same parameters as the run's workdir.
    step = max((finished / "checkpoints").iterdir(), key=lambda p: int(p.name))
    assert init_from.read_params(str(step)).keys() == saved.keys()
    # A spectral-normalized trunk (SNGP) loads the plain one's arrays by their base name.
    sngp = _fresh_params(_config("sngp"), shapes_only=True)
    _, sngp_report = init_from.merge(sngp, saved)
    assert sngp_report["loaded"] == ["SpectralNormDense_0/bias", "SpectralNormDense_0/kernel"]


def test_fine_tuning_trains_only_what_the_config_leaves_unfrozen(finished, tmp_path):
    config = _config("deterministic", path=str(finished), freeze=("^Dense_0/",))
    train_and_evaluate(config, tmp_path)
    tuned = init_from.flat_params(load_final_params(tmp_path))
    saved = init_from.flat_params(load_final_params(finished))
    fresh = init_from.flat_params(_fresh_params(config))
    for path in ("Dense_0/kernel", "Dense_0/bias"):  # frozen: the saved values, bit for bit
        np.testing.assert_array_equal(tuned[path], saved[path])
    # The head starts from the saved values too (same layer types) and is trained on.
    head = [p for p in tuned if p.startswith("DenseHead_0/")]
    assert head and all(not np.array_equal(tuned[p], saved[p]) for p in head)
    assert all(not np.array_equal(tuned[p], np.asarray(fresh[p])) for p in tuned)


def test_parameters_that_do_not_fit_are_one_error_naming_the_fix(finished):
    config = _config("deterministic", path=str(finished))
    with config.unlocked():
        config.model.hidden_sizes = (16,)
    with pytest.raises(
        UsageError, match=r"parameter \S*Dense_0/kernel is float32\[16, 10\].*init_from.exclude"
    ):
        train_and_evaluate(config, finished.parent / "narrow")
    with pytest.raises(UsageError, match="neither a run's workdir nor an orbax checkpoint"):
        init_from.read_params(str(finished / "missing"))


def test_the_ridge_probe_equals_scikit_learn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(40, 6)), rng.integers(0, 4, 40)
    weights, bias = few_shot.ridge_probe(features, labels, 4, l2=0.7)
    reference = Ridge(alpha=0.7).fit(features, np.eye(4)[labels])
    np.testing.assert_allclose(weights, reference.coef_.T, atol=1e-10)
    np.testing.assert_allclose(bias, reference.intercept_, atol=1e-10)


def test_k_shot_accuracy_of_frozen_features_grows_with_the_shots(finished):
    results = few_shot.few_shot_results(finished, shots=(1, 10))
    # Measured on the smoke run's features: 1-shot 0.56, 5-shot 0.69, 10-shot 0.76
    # (chance 0.10).
    assert results["10shot_accuracy"] > results["1shot_accuracy"] > 0.3, results
    assert results == few_shot.few_shot_results(finished, shots=(1, 10))  # a fixed draw

"""The sngp method: its record, its hooks, and what the loop does with them."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import methods, models
from relbench.errors import UsageError
from relbench.layers.gaussian_process import LAPLACE
from relbench.layers.spectral_norm import SPECTRAL_STATS
from relbench.methods.likelihoods import Gaussian
from relbench.metrics.predictive import predictive_probs
from relbench.train.state import TrainState
from tests.methods.sngp_runs import final_state, head_features, precision, tiny_moons_config


def _mlp(method, **layer_changes):
    layers = dataclasses.replace(method.layers(models.default_layers("mlp")), **layer_changes)
    return models.make("mlp", num_classes=3, hidden_sizes=(8,), layers=layers)


def test_predict_fn_returns_mean_field_logits_and_the_variance():
    method = methods.make("sngp", num_random_features=16, mean_field_factor=2.0)
    model = _mlp(method)
    x = jax.random.normal(jax.random.key(0), (5, 4))
    variables = model.init(jax.random.key(1), x, train=False)
    state = types.SimpleNamespace(variables=variables)
    logits, extras = method.predict_fn(model.apply, state, x, jax.random.key(2))
    raw, raw_extras = model.apply(variables, x, train=False)
    assert logits.shape == (1, 5, 3) and extras["variance"].shape == (1, 5, 3)
    np.testing.assert_allclose(
        logits, raw / np.sqrt(1 + 2.0 * np.asarray(raw_extras["variance"])), rtol=1e-6
    )
    assert set(variables) == {"params", SPECTRAL_STATS, LAPLACE, "random_features"}


def test_on_epoch_start_resets_every_precision_to_ridge_identity():
    method = methods.make("sngp", num_random_features=8, ridge=0.3)
    model = _mlp(method, ensemble_size=2)
    variables = dict(model.init(jax.random.key(0), jnp.ones((2, 4)), train=False))
    params = variables.pop("params")
    variables[LAPLACE] = jax.tree.map(lambda p: p + 5.0, variables[LAPLACE])
    state = TrainState(step=jnp.int32(7), params=params, opt_state=(), collections=variables)
    reset = method.on_epoch_start(state)
    for value in jax.tree.leaves(reset.collections[LAPLACE]):
        np.testing.assert_array_equal(value, np.float32(0.3) * np.eye(8, dtype=np.float32))
    assert reset.collections[SPECTRAL_STATS] is state.collections[SPECTRAL_STATS]
    assert methods.make("sngp", precision_update="momentum").on_epoch_start is None


def test_bad_hyperparameters_fail_at_make():
    with pytest.raises(UsageError, match="precision_update"):
        methods.make("sngp", precision_update="ema")
    with pytest.raises(UsageError, match="unknown sngp precision 'probit'"):
        methods.make("sngp", precision="probit")
    with pytest.raises(UsageError, match="precision='per_class'"):
        methods.make("sngp", likelihood=Gaussian(), precision="per_class")
    with pytest.raises(UsageError, match="norm_bund"):
        methods.make("sngp", norm_bund=1.0)


RIDGE = 0.5


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """Two epochs with frozen weights (learning rate 0, a bound no kernel reaches, so the
    features never change), drawing a 6x6 uncertainty surface."""
    config = tiny_moons_config(learning_rate=0.0, ridge=RIDGE, norm_bound=1e6)
    config.dataset.plot_resolution = 6
    workdir = tmp_path_factory.mktemp("frozen")
    exp, state = final_state(config, workdir)
    return exp, state, workdir


def test_loop_resets_the_exact_precision_at_each_epoch_start(frozen_run):
    """The final precision must hold exactly one pass over the data, ridge * I +
    Phi^T Phi; without the reset at step 4 it would hold two."""
    exp, state, _ = frozen_run
    assert exp.total_steps == 8  # two epochs of four steps
    phi = head_features(exp, state, exp.dataset.train.arrays["input"])
    one_epoch = RIDGE * np.eye(phi.shape[1]) + phi.T @ phi
    np.testing.assert_allclose(precision(state), one_epoch, rtol=1e-5, atol=1e-5)


def test_run_writes_the_uncertainty_surface_of_its_predictions(frozen_run):
    exp, state, workdir = frozen_run
    assert (workdir / "uncertainty_surface.png").stat().st_size > 0
    surface = np.load(workdir / "uncertainty_surface.npz")
    grid = surface["grid"]
    assert grid.shape == (36, 2)
    logits, extras = exp.method.predict_fn(exp.model.apply, state, grid, None)
    probs = np.asarray(predictive_probs(logits))
    np.testing.assert_allclose(surface["uncertainty"].ravel(), 1 - probs.max(-1), rtol=1e-5)
    np.testing.assert_allclose(
        surface["variance"].ravel(), np.asarray(extras["variance"]).mean(axis=(0, 2)), rtol=1e-5
    )


def test_cnn_gets_spectral_normalized_convolutions_of_the_real_operator():
    method = methods.make("sngp", num_random_features=16)
    layers = method.layers(models.default_layers("cnn"))
    model = models.make("cnn", num_classes=3, features=(4,), hidden_size=8, layers=layers)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    variables = model.init(jax.random.key(1), x, train=False)
    u_shapes = jax.tree.map(jnp.shape, variables[SPECTRAL_STATS])
    # conv: the output of one 8x8 example (stride 1, SAME); dense: its output width.
    assert u_shapes == {
        "SpectralNormConv_0": {"u": (1, 8, 8, 4)},
        "SpectralNormDense_0": {"u": (1, 8)},
    }
    batch = {"input": x, "label": jnp.array([0, 2])}
    rngs = {"dropout": jax.random.key(2)}
    loss, (updates, _) = jax.jit(
        lambda v: method.loss_fn(model.apply, v, batch, rngs, step=0, num_train_examples=2)
    )(variables)
    assert np.isfinite(loss)
    assert set(updates) == {"batch_stats", SPECTRAL_STATS, LAPLACE}
    assert not np.allclose(
        updates[SPECTRAL_STATS]["SpectralNormConv_0"]["u"],
        variables[SPECTRAL_STATS]["SpectralNormConv_0"]["u"],
    )

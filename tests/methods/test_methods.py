"""The Method records: hyperparameters, losses and predictive samples."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import methods, models
from relbench.errors import UsageError


def test_misspelt_hyperparameter_is_an_error_naming_it():
    with pytest.raises(UsageError, match=r"config\.method\.num_sample for method 'mc_dropout'"):
        methods.make("mc_dropout", num_sample=3)


def test_hyperparameters_come_from_make():
    # The likelihood is the dataset's, not a hyperparameter.
    assert methods.hyperparameters("mc_dropout") == {"dropout_rate": 0.1, "num_samples": 8}


def test_mc_dropout_predicts_distinct_samples_on_the_member_axis():
    method = methods.make("mc_dropout", dropout_rate=0.5, num_samples=6)
    layers = method.layers(models.default_layers("mlp"))
    model = models.make("mlp", num_classes=3, hidden_sizes=(32,), layers=layers)
    x = jax.random.normal(jax.random.key(0), (5, 4))
    state = types.SimpleNamespace(variables=model.init(jax.random.key(1), x, train=False))
    logits, _ = method.predict_fn(model.apply, state, x, jax.random.key(2))
    assert logits.shape == (6, 5, 3)
    assert len({np.asarray(m).tobytes() for m in logits}) == 6
    again, _ = method.predict_fn(model.apply, state, x, jax.random.key(2))
    np.testing.assert_array_equal(logits, again)


def test_deterministic_loss_is_cross_entropy():
    method = methods.make("deterministic")
    layers = method.layers(models.default_layers("mlp"))
    model = models.make("mlp", num_classes=4, hidden_sizes=(8,), layers=layers)
    x = jax.random.normal(jax.random.key(0), (7, 3))
    labels = jnp.arange(7) % 4
    variables = model.init(jax.random.key(1), x, train=False)
    loss, (updates, metrics) = method.loss_fn(
        model.apply, variables, {"input": x, "label": labels}, {}, step=0, num_train_examples=7
    )
    logits, _ = model.apply(variables, x, train=False)
    expected = -jnp.mean(jax.nn.log_softmax(logits[0])[jnp.arange(7), labels])
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert set(metrics) == {"accuracy"}

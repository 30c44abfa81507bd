"""Models keep the [M, B, K] contract on every image size, and take layer types as fields."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import models
from relbench.layers import MCDropout


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
@pytest.mark.parametrize("members", [1, 3])
def test_cnn_output_contract(shape, members):
    model = models.make(
        "cnn", num_classes=7, features=(8, 16), hidden_size=16, ensemble_size=members
    )
    x = jnp.ones((5, *shape))
    variables = model.init(jax.random.key(0), x, train=False)
    (logits, extras), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (members, 5, 7) and extras == {}
    assert "batch_stats" in updates


def test_mlp_members_see_the_same_batch():
    model = models.make("mlp", num_classes=3, hidden_sizes=(4,), ensemble_size=2)
    x = jax.random.normal(jax.random.key(1), (6, 5))
    variables = model.init(jax.random.key(0), x, train=False)
    logits, _ = model.apply(variables, x, train=False)
    assert logits.shape == (2, 6, 3)
    np.testing.assert_array_equal(logits[0], logits[1])  # plain layers: members identical


def test_injected_dropout_type_stays_on_at_test_time():
    x = jnp.ones((4, 10))
    plain = models.make("mlp", num_classes=2, hidden_sizes=(16,), dropout_rate=0.5)
    mc = models.make("mlp", num_classes=2, hidden_sizes=(16,), dropout_rate=0.5, dropout=MCDropout)
    variables = plain.init(jax.random.key(0), x, train=False)
    eval_plain = [plain.apply(variables, x, train=False)[0] for _ in range(2)]
    np.testing.assert_array_equal(*eval_plain)
    draws = [
        mc.apply(variables, x, train=False, rngs={"dropout": jax.random.key(i)})[0]
        for i in range(2)
    ]
    assert not np.allclose(*draws)


def test_custom_dense_type_is_used():
    calls = []

    class CountingDense(nn.Dense):
        def __call__(self, x):
            calls.append(self.features)
            return super().__call__(x)

    model = models.make("mlp", num_classes=2, hidden_sizes=(8, 4), dense=CountingDense)
    model.init(jax.random.key(0), jnp.ones((1, 3)), train=False)
    assert calls == [8, 4]  # hidden layers; the head has its own dense field

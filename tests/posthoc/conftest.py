"""A digits MLP trained briefly (shared by the Laplace tests): its first 1,200 shuffled
examples train it, ``VALIDATION`` and ``TEST`` are the held-out parts."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

from relbench.models import MLP

TRAIN, VALIDATION, TEST = slice(0, 1200), slice(1200, 1450), slice(1450, None)


@pytest.fixture(scope="session")
def digits_mlp():
    """``(model, params, x, y)``: an MLP (32,) after 300 Adam steps on the full batch."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))  # the file is sorted by writer
    x = jnp.asarray(x[order] / 16.0, jnp.float32)
    y = jnp.asarray(y[order])
    model = MLP(num_classes=10, hidden_sizes=(32,))
    params = model.init(jax.random.key(0), x[:1], train=False)["params"]
    tx = optax.adam(2e-2)

    def loss(p):
        logits, _ = model.apply({"params": p}, x[TRAIN], train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits[0], y[TRAIN]).mean()

    @jax.jit
    def train(p):
        def step(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(loss)(p), s)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (p, tx.init(p)), None, length=300)[0][0]

    return model, train(params), x, y

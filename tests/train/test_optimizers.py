"""Learning-rate schedules and weight decay against their definitions."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from relbench.errors import UsageError
from relbench.train import optimizers


def test_warmup_then_cosine():
    lr = optimizers.schedule(0.1, 110, "cosine", 10, (), 0.1)
    np.testing.assert_allclose([lr(0), lr(5), lr(10)], [0.0, 0.05, 0.1], rtol=1e-6)
    np.testing.assert_allclose(lr(60), 0.1 * 0.5 * (1 + np.cos(np.pi * 0.5)), rtol=1e-5)
    np.testing.assert_allclose(lr(110), 0.0, atol=1e-7)


def test_step_decay_at_fractions_of_training():
    lr = optimizers.schedule(1.0, 100, "step", 0, (0.5, 0.75), 0.1)
    np.testing.assert_allclose([lr(49), lr(50), lr(74), lr(75)], [1.0, 0.1, 0.1, 0.01], rtol=1e-6)


def test_weight_decay_touches_kernels_only():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    zeros = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}
    tx = optimizers.make(
        total_steps=10,
        name="sgd",
        learning_rate=1.0,
        momentum=0.0,
        weight_decay=0.1,
        schedule_kind="constant",
    )
    updates, _ = tx.update(zeros, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["kernel"], 0.9)
    np.testing.assert_allclose(new["bias"], 1.0)


def test_unknown_optimizer_and_schedule_are_named():
    with pytest.raises(UsageError, match="unknown config.optimizer.name 'sgdd'"):
        optimizers.make(total_steps=10, name="sgdd")
    with pytest.raises(UsageError, match="unknown config.optimizer.schedule 'cos'"):
        optimizers.make(total_steps=10, schedule_kind="cos")

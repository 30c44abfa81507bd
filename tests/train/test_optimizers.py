"""Learning-rate schedules and weight decay against their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from relbench import methods, models
from relbench.errors import UsageError
from relbench.methods import deep_ensemble, members
from relbench.methods.method import rng_dict
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


def decayed_leaves(params, decay_mask, name="sgd") -> set[str]:
    """The paths of the leaves weight decay moves: zero gradients, learning rate 1."""
    tx = optimizers.make(
        total_steps=10,
        decay_mask=decay_mask,
        name=name,
        learning_rate=1.0,
        momentum=0.0,
        weight_decay=0.1,
        schedule_kind="constant",
    )
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(ones), ones)
    leaves = jax.tree_util.tree_flatten_with_path(updates)[0]
    return {jax.tree_util.keystr(path) for path, u in leaves if np.any(np.asarray(u) != 0)}


def kernel_leaves(params) -> set[str]:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(path) for path, _ in leaves if path[-1].key == "kernel"}


def method_params(name: str):
    """A small CNN's parameters (convs, batch norm, dense, head) under ``name``."""
    method = methods.make(name, **({"ensemble_size": 2} if name != "deterministic" else {}))
    layers = method.layers(models.default_layers("cnn"))
    model = models.make("cnn", num_classes=3, features=(4,), hidden_size=8, layers=layers)
    key = jax.random.key(0)
    rngs = {"params": key, **rng_dict(key, method.rng_streams)}
    variables = model.init(rngs, jnp.ones((1, 8, 8, 1)), train=False)
    return method, variables["params"]


# Which leaves decay: the kernels of plain layers; the shared slow kernels of
# BatchEnsemble and rank-1 layers, never their fast weights, per-member biases and
# per-member normalization scales ([M, N]); every deep-ensemble member's kernel
# ([M, ...]), not its biases and scales ([M, N]).
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize(
    "name, mask",
    [
        ("deterministic", None),  # the optimizer's own: matrices
        ("batchensemble", members.kernels),
        ("rank1", members.kernels),
        ("deep_ensemble", deep_ensemble.member_matrices),
    ],
)
def test_weight_decay_follows_the_method_mask(name, mask, optimizer):
    method, params = method_params(name)
    assert method.decay_mask is mask
    kernels = kernel_leaves(params)
    assert kernels and decayed_leaves(params, method.decay_mask, optimizer) == kernels
    if name != "deterministic":
        # Per-unit parameters with a member axis: rank 2, yet never decayed.
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        per_member = {jax.tree_util.keystr(p) for p, v in leaves if v.ndim == 2} - kernels
        assert per_member, "no per-member parameters of rank 2 to check"
        # The plain mask would decay them: the method's own mask is what keeps them.
        assert per_member <= decayed_leaves(params, optimizers.matrices, optimizer)


def test_unknown_optimizer_and_schedule_are_named():
    with pytest.raises(UsageError, match="unknown config.optimizer.name 'sgdd'"):
        optimizers.make(total_steps=10, name="sgdd")
    with pytest.raises(UsageError, match="unknown config.optimizer.schedule 'cos'"):
        optimizers.make(total_steps=10, schedule_kind="cos")

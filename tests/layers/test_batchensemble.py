"""BatchEnsemble layers against per-member loops of ordinary Flax layers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench.errors import UsageError
from relbench.layers.batchensemble import (
    BatchEnsembleConv,
    BatchEnsembleDense,
    effective_kernel,
    ensemble_batch_norm,
    gaussian_init,
    random_sign_init,
)
from relbench.layers.members import split_members, tile_members

M, B = 3, 4
normal_init = nn.initializers.normal(1.0)


def _per_member(layer, params, x):
    """Member m's rows through ``layer`` with member m's effective kernel and bias."""
    kernels = effective_kernel(params["shared"], params["alpha"], params["gamma"])
    rows = split_members(x, M)
    return jnp.concatenate(
        [
            layer.apply({"params": {"kernel": kernels[m], "bias": params["bias"][m]}}, rows[m])
            for m in range(M)
        ]
    )


@pytest.mark.parametrize("fold_alpha", [False, True])
@pytest.mark.parametrize("init", [random_sign_init, gaussian_init(0.5)])
def test_dense_equals_per_member_dense_with_effective_weights(init, fold_alpha):
    x = jax.random.normal(jax.random.key(0), (M * B, 5))
    layer = BatchEnsembleDense(
        7, ensemble_size=M, fast_weight_init=init, bias_init=normal_init, fold_alpha=fold_alpha
    )
    variables = layer.init(jax.random.key(1), x)
    p = variables["params"]
    got = layer.apply(variables, x)
    params = {"shared": p["Dense_0"]["kernel"], **{k: p[k] for k in ("alpha", "gamma", "bias")}}
    want = _per_member(nn.Dense(7), params, x)
    assert got.shape == (M * B, 7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fold_alpha", [True, False])
@pytest.mark.parametrize("strides,padding", [(1, "SAME"), (2, "VALID")])
def test_conv_equals_per_member_conv_with_effective_weights(strides, padding, fold_alpha):
    x = jax.random.normal(jax.random.key(0), (M * B, 6, 6, 2))
    layer = BatchEnsembleConv(
        4,
        (3, 3),
        strides=strides,
        padding=padding,
        ensemble_size=M,
        fast_weight_init=gaussian_init(0.5),
        bias_init=normal_init,
        fold_alpha=fold_alpha,
    )
    variables = layer.init(jax.random.key(1), x)
    p = variables["params"]
    got = layer.apply(variables, x)
    params = {"shared": p["Conv_0"]["kernel"], **{k: p[k] for k in ("alpha", "gamma", "bias")}}
    want = _per_member(nn.Conv(4, (3, 3), strides=strides, padding=padding), params, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _layer_case(kind, fold_alpha):
    """A BatchEnsemble layer, its input, its per-member reference and its kernel's name."""
    if kind == "dense":
        layer = BatchEnsembleDense(
            7, ensemble_size=M, fast_weight_init=gaussian_init(0.5), fold_alpha=fold_alpha
        )
        return layer, jax.random.normal(jax.random.key(0), (M * B, 5)), nn.Dense(7), "Dense_0"
    layer = BatchEnsembleConv(
        4, (3, 3), ensemble_size=M, fast_weight_init=gaussian_init(0.5), fold_alpha=fold_alpha
    )
    x = jax.random.normal(jax.random.key(0), (M * B, 6, 6, 2))
    return layer, x, nn.Conv(4, (3, 3)), "Conv_0"


def _as_reference(p, kernel_name):
    return {"shared": p[kernel_name]["kernel"], **{k: p[k] for k in ("alpha", "gamma", "bias")}}


@pytest.mark.parametrize("input_gradient", [True, False])
@pytest.mark.parametrize("fold_alpha", [True, False])
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_gradients_equal_per_member_gradients(kind, fold_alpha, input_gradient):
    """Folded or not, with the input differentiated (a hidden layer: alpha's gradient
    from the input gradient) or not (a network's input: alpha's gradient from the
    members' kernel gradients), every gradient is the effective-weight model's."""
    layer, x, base, kernel_name = _layer_case(kind, fold_alpha)
    p = layer.init(jax.random.key(1), x)["params"]
    target = jax.random.normal(jax.random.key(2), layer.apply({"params": p}, x).shape)

    def loss(got):
        return jnp.sum((got - target) ** 2)

    argnums = (0, 1) if input_gradient else 0
    got = jax.grad(lambda p, x: loss(layer.apply({"params": p}, x)), argnums)(p, x)
    want = jax.grad(lambda q, x: loss(_per_member(base, q, x)), argnums)(
        _as_reference(p, kernel_name), x
    )
    if input_gradient:
        (got, got_x), (want, want_x) = got, want
        np.testing.assert_allclose(got_x, want_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[kernel_name]["kernel"], want["shared"], rtol=1e-5, atol=1e-5)
    for name in ("alpha", "gamma", "bias"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("input_tangent", [True, False])
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_forward_mode_equals_per_member_forward_mode(kind, input_tangent):
    """``jax.jvp`` (as the Laplace GLM predictive's ``jax.linearize`` runs it) through
    both forms of ``scaled_product``'s derivative."""
    layer, x, base, kernel_name = _layer_case(kind, fold_alpha=False)
    p = layer.init(jax.random.key(1), x)["params"]
    tangent = jax.tree.map(lambda a: jax.random.normal(jax.random.key(3), a.shape), p)
    dx = jax.random.normal(jax.random.key(4), x.shape) if input_tangent else jnp.zeros_like(x)

    def ours(p, x):
        return layer.apply({"params": p}, x)

    def reference(p, x):
        return _per_member(base, _as_reference(p, kernel_name), x)

    if input_tangent:
        _, got = jax.jvp(ours, (p, x), (tangent, dx))
        _, want = jax.jvp(reference, (p, x), (tangent, dx))
    else:
        _, got = jax.jvp(lambda p: ours(p, x), (p,), (tangent,))
        _, want = jax.jvp(lambda p: reference(p, x), (p,), (tangent,))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gradient_on_a_fixed_input_costs_a_deterministic_layers_flops():
    """On a network's input, alpha's gradient needs no input-gradient product: the
    compiled gradient has the FLOPs of a dense layer's on the tiled batch (up to the
    elementwise factors), not the 1.5 times that differentiating ``x o alpha`` costs."""
    x = jax.random.normal(jax.random.key(0), (4 * 64, 256))
    layer, plain = BatchEnsembleDense(128, ensemble_size=4, use_bias=False), nn.Dense(128)

    def gradient_flops(module):
        p = module.init(jax.random.key(1), x)["params"]
        step = jax.jit(jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x) ** 2)))
        return step.lower(p).compile().cost_analysis()["flops"]

    assert gradient_flops(layer) / gradient_flops(plain) < 1.05


def test_parameter_count_is_shared_weight_plus_rank1_factors():
    layer = BatchEnsembleDense(7, ensemble_size=M)
    variables = layer.init(jax.random.key(0), jnp.zeros((M, 5)))
    count = sum(a.size for a in jax.tree.leaves(variables))
    assert count == 5 * 7 + M * (5 + 7 + 7)


def test_members_differ_on_tiled_inputs():
    x = tile_members(jax.random.normal(jax.random.key(0), (B, 5)), M)
    layer = BatchEnsembleDense(7, ensemble_size=M)
    y = split_members(layer.apply(layer.init(jax.random.key(1), x), x), M)
    for m in range(1, M):
        assert not np.allclose(y[0], y[m])


def test_random_sign_init_is_plus_or_minus_one():
    values = np.asarray(random_sign_init(jax.random.key(0), (1000,)))
    assert set(np.unique(values)) == {-1.0, 1.0}


def test_rows_not_divisible_by_members_is_a_usage_error():
    layer = BatchEnsembleDense(7, ensemble_size=M)
    variables = layer.init(jax.random.key(0), jnp.zeros((M, 5)))
    with pytest.raises(UsageError, match="divisible by ensemble_size"):
        layer.apply(variables, jnp.zeros((M * B + 1, 5)))


def test_ensemble_batch_norm_equals_per_member_batch_norm():
    x = jax.random.normal(jax.random.key(0), (M * B, 3, 3, 2)) * 2.0 + 1.0
    norm = ensemble_batch_norm(M)(use_running_average=False, momentum=0.5)
    variables = norm.init(jax.random.key(1), x)
    variables = jax.tree.map(
        lambda a: a + jax.random.normal(jax.random.key(2), a.shape), variables
    )  # distinct per-member scales, biases and running averages
    got, updates = norm.apply(variables, x, mutable=["batch_stats"])
    base = nn.BatchNorm(use_running_average=False, momentum=0.5)
    rows = split_members(x, M)
    for m in range(M):
        member = jax.tree.map(lambda a, m=m: a[m], variables)
        want, want_updates = base.apply(member, rows[m], mutable=["batch_stats"])
        np.testing.assert_allclose(split_members(got, M)[m], want, rtol=1e-5, atol=1e-6)
        for name in ("mean", "var"):
            np.testing.assert_allclose(
                updates["batch_stats"][name][m],
                want_updates["batch_stats"][name],
                rtol=1e-5,
                atol=1e-6,
            )

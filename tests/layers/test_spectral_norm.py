"""Bounded spectral normalization against numpy SVDs of the layers' linear maps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench.errors import UsageError
from relbench.layers.spectral_norm import (
    SPECTRAL_STATS,
    SpectralNormConv,
    SpectralNormDense,
    bound_kernel,
    spectral_norm_estimate,
)

# Power iteration estimates sigma from below; after convergence the effective norm is
# the bound up to this relative tolerance.
SVD_RTOL = 1e-3


def _top_singular_value(matrix) -> float:
    return float(np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)[0])


def _with_kernel(variables, kernel):
    return {**variables, "params": {**variables["params"], "kernel": kernel}}


def _train_steps(module, variables, x, steps):
    @jax.jit
    def step(variables):
        _, updates = module.apply(variables, x, train=True, mutable=[SPECTRAL_STATS])
        return {**variables, **updates}

    for _ in range(steps):
        variables = step(variables)
    return variables


def _operator_matrix(module, variables, example):
    """The layer's linear map (no bias) on one example as a dense [out, in] matrix."""
    jacobian = jax.jacobian(lambda x: module.apply(variables, x, train=False))(example)
    out_size = int(np.prod(jacobian.shape[: example.ndim]))
    return np.asarray(jacobian).reshape(out_size, -1)


def test_power_iteration_converges_to_numpy_svd():
    kernel = jax.random.normal(jax.random.key(0), (7, 5))
    u = jax.random.normal(jax.random.key(1), (1, 5))
    sigma, _ = spectral_norm_estimate(
        lambda x: x @ kernel, jax.ShapeDtypeStruct((1, 7), jnp.float32), u, 100
    )
    np.testing.assert_allclose(sigma, _top_singular_value(kernel), rtol=1e-5)


@pytest.mark.parametrize("norm_bound", [0.5, 0.95])
def test_dense_effective_kernel_within_bound(norm_bound):
    module = SpectralNormDense(6, norm_bound=norm_bound, num_iterations=1, use_bias=False)
    eye = jnp.eye(5)
    variables = module.init(jax.random.key(0), eye, train=False)
    kernel = 3.0 * jax.random.normal(jax.random.key(1), (5, 6))
    assert _top_singular_value(kernel) > 2 * norm_bound
    # One iteration per training step, as in training, with u persisting between steps.
    variables = _train_steps(module, _with_kernel(variables, kernel), eye, 40)
    effective = module.apply(variables, eye, train=False)  # I @ W_sn = W_sn
    top = _top_singular_value(effective)
    assert top <= norm_bound * (1 + SVD_RTOL)
    assert top >= norm_bound * (1 - SVD_RTOL)  # a soft bound: scaled to c, not below


def test_dense_kernel_below_bound_is_unchanged():
    module = SpectralNormDense(6, norm_bound=1.0)
    x = jax.random.normal(jax.random.key(2), (4, 5))
    variables = module.init(jax.random.key(0), x, train=False)
    kernel = variables["params"]["kernel"]
    kernel = 0.5 * kernel / _top_singular_value(kernel)
    variables = _with_kernel(variables, kernel)
    plain = nn.Dense(6).apply({"params": variables["params"]}, x)
    for train in (True, False):
        out = module.apply(variables, x, train=train, mutable=[SPECTRAL_STATS])[0]
        np.testing.assert_array_equal(out, plain)
    np.testing.assert_array_equal(bound_kernel(kernel, jnp.float32(0.5), 1.0), kernel)


CONV_CASES = [
    dict(strides=2, padding="SAME"),
    dict(strides=1, padding="VALID", kernel_dilation=2),
    dict(strides=(2, 1), padding=((1, 0), (2, 1))),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_operator_norm_within_bound(case):
    norm_bound = 0.8
    module = SpectralNormConv(
        4, (3, 3), norm_bound=norm_bound, num_iterations=1, use_bias=False, **case
    )
    example = jnp.zeros((1, 7, 6, 3))
    variables = module.init(jax.random.key(0), example, train=False)
    kernel = 2.0 * jax.random.normal(jax.random.key(3), variables["params"]["kernel"].shape)
    variables = _with_kernel(variables, kernel)
    unbounded = module.clone(norm_bound=1e6)
    assert _top_singular_value(_operator_matrix(unbounded, variables, example)) > 2 * norm_bound
    variables = _train_steps(module, variables, example, 60)
    top = _top_singular_value(_operator_matrix(module, variables, example))
    assert norm_bound * (1 - SVD_RTOL) <= top <= norm_bound * (1 + SVD_RTOL)


def test_conv_power_iteration_is_on_the_operator_not_the_flat_kernel():
    kernel = jax.random.normal(jax.random.key(4), (3, 3, 2, 3))
    example = jax.ShapeDtypeStruct((1, 8, 8, 2), jnp.float32)

    def conv(x):
        return jax.lax.conv_general_dilated(
            x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    u = jax.random.normal(jax.random.key(5), jax.eval_shape(conv, example).shape)
    step = jax.jit(lambda u: spectral_norm_estimate(conv, example, u, 1))
    for _ in range(300):
        sigma, u = step(u)
    operator = jax.jacobian(conv)(jnp.zeros(example.shape)).reshape(4 * 4 * 3, 8 * 8 * 2)
    np.testing.assert_allclose(sigma, _top_singular_value(operator), rtol=1e-4)
    flat = _top_singular_value(np.asarray(kernel).reshape(-1, 3))
    assert abs(flat - float(sigma)) > 0.05 * float(sigma)  # the flat reshape is another norm


def test_conv_kernel_below_bound_is_unchanged():
    module = SpectralNormConv(4, (3, 3), strides=2, norm_bound=1.0)
    x = jax.random.normal(jax.random.key(6), (2, 6, 6, 3))
    variables = module.init(jax.random.key(0), x, train=False)
    kernel = variables["params"]["kernel"]
    unbounded = SpectralNormConv(4, (3, 3), strides=2, norm_bound=1e6, use_bias=False)
    operator = _operator_matrix(unbounded, {**variables, "params": {"kernel": kernel}}, x[:1])
    operator_norm = _top_singular_value(operator)
    variables = _with_kernel(variables, 0.5 * kernel / operator_norm)
    plain = nn.Conv(4, (3, 3), strides=2).apply({"params": variables["params"]}, x)
    out = module.apply(variables, x, train=True, mutable=[SPECTRAL_STATS])[0]
    np.testing.assert_allclose(out, plain, rtol=1e-6, atol=1e-6)


def test_gradient_treats_power_iteration_vectors_as_constants():
    module = SpectralNormDense(3, norm_bound=0.5, use_bias=False)
    x = jax.random.normal(jax.random.key(7), (4, 5))
    variables = module.init(jax.random.key(0), x, train=False)
    u = variables[SPECTRAL_STATS]["u"]

    def loss(kernel):
        return jnp.sum(module.apply(_with_kernel(variables, kernel), x, train=False) ** 2)

    kernel = variables["params"]["kernel"]
    v = u @ kernel.T
    v = v / jnp.linalg.norm(v)

    def closed_form(kernel):  # sigma = u^T (v W)^T with u and v held fixed
        sigma = jnp.sum(u * (v @ kernel))
        return jnp.sum((x @ (kernel / jnp.maximum(1.0, sigma / 0.5))) ** 2)

    np.testing.assert_allclose(jax.grad(loss)(kernel), jax.grad(closed_form)(kernel), rtol=1e-5)


def test_evaluation_leaves_the_vector_alone_and_training_updates_it():
    module = SpectralNormDense(3)
    x = jnp.ones((2, 4))
    variables = module.init(jax.random.key(0), x, train=False)
    _, updates = module.apply(variables, x, train=True, mutable=[SPECTRAL_STATS])
    assert not np.allclose(updates[SPECTRAL_STATS]["u"], variables[SPECTRAL_STATS]["u"])
    module.apply(variables, x, train=False)  # nothing mutable: must not try to write
    assert set(variables["params"]) == {"kernel", "bias"}  # never written back


def test_bad_settings_are_usage_errors():
    x = jnp.ones((1, 4, 4, 2))
    with pytest.raises(UsageError, match="norm_bound"):
        SpectralNormDense(3, norm_bound=0.0).init(jax.random.key(0), x[:, 0, 0], train=False)
    with pytest.raises(UsageError, match="CIRCULAR"):
        SpectralNormConv(3, (3, 3), padding="CIRCULAR").init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError, match="train"):
        SpectralNormDense(3).init(jax.random.key(0), x[:, 0, 0])

"""Random Fourier features against the exact RBF kernel."""

import jax
import numpy as np
import pytest

from relbench.layers.random_features import (
    RANDOM_FEATURES,
    RandomFourierFeatures,
    fourier_cosine,
    gaussian_frequencies,
    orthogonal_frequencies,
    random_fourier_features,
    random_phases,
    sine_and_cosine,
)

ULP_AT_ONE = float(np.spacing(np.float32(1.0)))  # 2^-23: two float32 ulp just below 1


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e3])
def test_sine_and_cosine_err_less_than_two_ulp_at_one(scale):
    # Arguments of every quadrant up to |x| ~ 4.4 scale < 8192, and multiples of pi/2.
    x = np.random.default_rng(0).normal(size=1 << 16).astype(np.float32) * np.float32(scale)
    x[:64] = (np.arange(64) - 32) * np.float32(np.pi / 2)
    sin, cos = jax.jit(sine_and_cosine)(x)
    exact = np.asarray(x, np.float64)
    assert np.max(np.abs(np.asarray(cos, np.float64) - np.cos(exact))) < ULP_AT_ONE
    assert np.max(np.abs(np.asarray(sin, np.float64) - np.sin(exact))) < ULP_AT_ONE


def test_sine_and_cosine_of_large_arguments_err_less_than_the_arguments_spacing():
    # Beyond 8192 the reduction loses bits (without fused multiply-adds), but less than
    # the argument itself carries: float32's spacing at |x|.
    x = np.random.default_rng(1).normal(size=1 << 16).astype(np.float32) * np.float32(1e5)
    sin, cos = jax.jit(sine_and_cosine)(x)
    exact = np.asarray(x, np.float64)
    spacing = np.spacing(np.abs(x)).astype(np.float64)
    assert np.all(np.abs(np.asarray(cos, np.float64) - np.cos(exact)) < spacing)
    assert np.all(np.abs(np.asarray(sin, np.float64) - np.sin(exact)) < spacing)


def test_fourier_cosine_differentiates_to_minus_sine():
    x = np.linspace(-20.0, 20.0, 4001, dtype=np.float32)
    derivative = jax.vmap(jax.grad(fourier_cosine))(x)
    np.testing.assert_allclose(derivative, -np.sin(np.asarray(x, np.float64)), atol=ULP_AT_ONE)
    _, forward = jax.jvp(fourier_cosine, (x,), (np.ones_like(x),))  # forward mode
    np.testing.assert_allclose(forward, -np.sin(np.asarray(x, np.float64)), atol=ULP_AT_ONE)
    second = jax.vmap(jax.grad(jax.grad(fourier_cosine)))(x)  # through the custom JVP
    np.testing.assert_allclose(second, -np.cos(np.asarray(x, np.float64)), atol=2 * ULP_AT_ONE)


def rbf(x, y, length_scale):
    """The exact kernel exp(-||x - y||^2 / (2 l^2)), by a naive double loop."""
    out = np.empty((len(x), len(y)))
    for i, a in enumerate(np.asarray(x, np.float64)):
        for j, b in enumerate(np.asarray(y, np.float64)):
            out[i, j] = np.exp(-np.sum((a - b) ** 2) / (2 * length_scale**2))
    return out


def _approximation_error(draw, num_features, key, x, length_scale):
    k_freq, k_phase = jax.random.split(key)
    frequencies = draw(k_freq, x.shape[1], num_features, length_scale)
    phi = random_fourier_features(x, frequencies, random_phases(k_phase, num_features))
    approx = np.asarray(phi, np.float64) @ np.asarray(phi, np.float64).T
    return np.mean(np.abs(approx - rbf(x, x, length_scale)))


@pytest.mark.parametrize("draw", [gaussian_frequencies, orthogonal_frequencies])
def test_features_approximate_rbf_with_error_shrinking_in_feature_count(draw):
    x = jax.random.normal(jax.random.key(0), (24, 6))
    length_scale = 2.0
    counts = (16, 256, 4096)
    errors = [
        np.mean(
            [_approximation_error(draw, f, jax.random.key(s), x, length_scale) for s in range(4)]
        )
        for f in counts
    ]
    # Monte Carlo error ~ 1/sqrt(F): each 16x more features should at least halve it.
    assert errors[1] < errors[0] / 2
    assert errors[2] < errors[1] / 2
    assert errors[2] < 0.02


def test_orthogonal_frequencies_are_orthogonal_within_each_block():
    dim, features = 5, 12
    w = np.asarray(orthogonal_frequencies(jax.random.key(1), dim, features, 1.0), np.float64)
    assert w.shape == (dim, features)
    for start in range(0, features, dim):
        block = w[:, start : start + dim]
        gram = block.T @ block
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-5)


def test_module_features_are_frozen_and_drawn_from_the_init_stream():
    module = RandomFourierFeatures(32, kernel_scale=0.5)
    x = jax.random.normal(jax.random.key(2), (3, 4))
    a = module.init(jax.random.key(0), x)
    assert set(a) == {RANDOM_FEATURES}  # nothing trainable: no gradient, no weight decay
    assert a[RANDOM_FEATURES]["frequencies"].shape == (4, 32)
    b = module.init(jax.random.key(0), x)
    c = module.init(jax.random.key(1), x)
    np.testing.assert_array_equal(
        a[RANDOM_FEATURES]["frequencies"], b[RANDOM_FEATURES]["frequencies"]
    )
    assert not np.allclose(a[RANDOM_FEATURES]["frequencies"], c[RANDOM_FEATURES]["frequencies"])
    out = module.apply(a, x)  # no RNG needed after init
    w, b = (np.asarray(a[RANDOM_FEATURES][k], np.float64) for k in ("frequencies", "phases"))
    expected = np.sqrt(2.0 / 32) * np.cos(np.asarray(x, np.float64) @ w + b)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)

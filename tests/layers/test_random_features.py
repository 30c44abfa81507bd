"""Random Fourier features against the exact RBF kernel."""

import jax
import numpy as np
import pytest

from relbench.layers.random_features import (
    RANDOM_FEATURES,
    RandomFourierFeatures,
    gaussian_frequencies,
    orthogonal_frequencies,
    random_fourier_features,
    random_phases,
)


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

"""The Gaussian regression head: its mean comes from the ``loc`` head, whose own variance
of the mean (a GP head's, say) adds to the noise variance."""

import functools

import jax
import numpy as np

from relbench.layers.gaussian import GaussianHead
from relbench.layers.gaussian_process import LAPLACE, RandomFeatureGaussianProcess

N, D, P = 6, 3, 2


def _softplus(x):
    return np.logaddexp(0.0, x)


def test_a_loc_head_with_a_variance_adds_it_to_the_noise_variance():
    loc = functools.partial(RandomFeatureGaussianProcess, num_features=16, kernel_scale=1.5)
    head = GaussianHead(P, loc=loc, min_variance=1e-3)
    x = jax.random.normal(jax.random.key(0), (N, D))
    variables = head.init(jax.random.key(1), x, train=False)
    # A precision after one pass over x, so the loc's variance is not the prior's.
    _, updates = head.apply(variables, x, train=True, mutable=[LAPLACE])
    variables = {**variables, **updates}
    mean, extras = head.apply(variables, x, train=False)

    loc_variables = {name: tree["mean"] for name, tree in variables.items()}
    want_mean, loc_extras = loc(P).apply(loc_variables, x, train=False)
    assert "variance" in loc_extras
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(extras["mean_variance"], loc_extras["variance"], rtol=1e-6)
    dense = variables["params"]["variance"]
    raw = np.asarray(x, np.float64) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    noise = _softplus(raw) + 1e-3
    np.testing.assert_allclose(
        extras["variance"], noise + np.asarray(loc_extras["variance"]), rtol=1e-5, atol=1e-7
    )
    assert np.all(np.asarray(loc_extras["variance"]) > 1e-3)  # the sum differs from the noise


def test_the_default_loc_is_a_dense_mean_without_a_mean_variance():
    head = GaussianHead(P, heteroscedastic=False, min_variance=1e-3)
    x = jax.random.normal(jax.random.key(2), (N, D))
    variables = head.init(jax.random.key(3), x, train=False)
    mean, extras = head.apply(variables, x, train=False)
    kernel = variables["params"]["mean"]["Dense_0"]
    np.testing.assert_allclose(mean, x @ kernel["kernel"] + kernel["bias"], rtol=1e-5, atol=1e-6)
    assert set(extras) == {"variance"}
    want = np.broadcast_to(_softplus(0.0) + 1e-3, (N, P))  # the raw variance starts at zero
    np.testing.assert_allclose(extras["variance"], want, rtol=1e-6)

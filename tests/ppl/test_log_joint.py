"""make_log_joint_fn on Bayesian linear regression, whose posterior is known exactly.

Model: w ~ N(0, I / alpha), y | w ~ N(X w, sigma^2 I). Then the posterior is
N(m, S) with S = (alpha I + X^T X / sigma^2)^-1, m = S X^T y / sigma^2, and the
evidence is p(y) = N(y; 0, sigma^2 I + X X^T / alpha), so for every w

    log p(w, y) = log N(w; m, S) + log p(y).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import relbench.ppl as rb
from relbench.errors import UsageError

ALPHA, SIGMA = 2.0, 0.5


def regression(x):
    w = rb.Normal(jnp.zeros(x.shape[1]), 1.0 / np.sqrt(ALPHA), name="w")
    return rb.Normal(x @ w, SIGMA, name="y")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -0.5, 2.0]) + SIGMA * rng.normal(size=20)).astype(np.float32)
    return x, y


def closed_form(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    cov = np.linalg.inv(ALPHA * np.eye(x.shape[1]) + x.T @ x / SIGMA**2)
    mean = cov @ x.T @ y / SIGMA**2
    evidence = stats.multivariate_normal(
        np.zeros(len(y)), SIGMA**2 * np.eye(len(y)) + x @ x.T / ALPHA
    ).logpdf(y)
    return mean, cov, evidence


def test_matches_hand_written_log_joint(data):
    x, y = data
    log_joint = jax.jit(rb.make_log_joint_fn(regression))
    for w in np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32):
        hand = stats.norm(0, 1 / np.sqrt(ALPHA)).logpdf(w).sum()
        hand += stats.norm(x @ w, SIGMA).logpdf(y).sum()
        np.testing.assert_allclose(log_joint({"w": w, "y": y}, x), hand, rtol=1e-5)


def test_log_joint_is_posterior_plus_evidence(data):
    x, y = data
    mean, cov, evidence = closed_form(x, y)
    log_joint = jax.jit(rb.make_log_joint_fn(regression))
    for w in mean + np.random.default_rng(2).normal(size=(4, 3)) * 0.3:
        posterior = stats.multivariate_normal(mean, cov).logpdf(w)
        got = log_joint({"w": w.astype(np.float32), "y": y}, x)
        np.testing.assert_allclose(got, posterior + evidence, rtol=1e-5)
    # The posterior mean is the mode: the gradient of the log joint vanishes there.
    grad = jax.grad(lambda w: log_joint({"w": w, "y": y}, x))(jnp.asarray(mean, jnp.float32))
    np.testing.assert_allclose(grad, 0.0, atol=2e-3)


def test_missing_or_unknown_values_are_usage_errors(data):
    x, y = data
    log_joint = rb.make_log_joint_fn(regression)
    with pytest.raises(UsageError, match="no value for random variable 'w'"):
        log_joint({"y": y}, x)
    with pytest.raises(UsageError, match="'v'"):
        log_joint({"w": np.zeros(3, np.float32), "y": y, "v": 1.0}, x)

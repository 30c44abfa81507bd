"""The Laplace random-feature GP head against closed forms and naive loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench.errors import UsageError
from relbench.layers.gaussian_process import (
    LAPLACE,
    RandomFeatureGaussianProcess,
    hessian_weights,
    init_precision,
    mean_field_logits,
    predictive_covariance,
    predictive_variance,
    reset_precision,
)
from relbench.layers.random_features import RandomFourierFeatures

F, D, K = 32, 3, 4


def _head(**kwargs):
    return RandomFeatureGaussianProcess(K, num_features=F, kernel_scale=1.5, **kwargs)


def _features(head, variables, x):
    """The head's random features phi(x) [N, F], as float64 numpy."""
    _, state = head.apply(
        variables,
        x,
        train=False,
        capture_intermediates=lambda m, _: isinstance(m, RandomFourierFeatures),
    )
    return np.asarray(state["intermediates"]["features"]["__call__"][0], np.float64)


def _train_on(head, variables, batches):
    for x in batches:
        _, updates = head.apply(variables, x, train=True, mutable=[LAPLACE])
        variables = {**variables, **updates}
    return variables


def _data(seed, n):
    return jax.random.normal(jax.random.key(seed), (n, D))


def test_posterior_covariance_equals_exact_gp_posterior():
    """With k(x, x') = phi(x)^T phi(x') and noise variance s = ridge, the head's
    covariance after one pass is k_** - k_*^T (K + s I)^{-1} k_* (GPML Eq. 2.26)."""
    ridge = 0.7
    head = _head(ridge=ridge)
    train_x, test_x = _data(0, 20), _data(1, 6)
    variables = head.init(jax.random.key(0), train_x, train=False)
    variables = _train_on(head, variables, [train_x[:12], train_x[12:]])

    phi_train = _features(head, variables, train_x)
    phi_test = _features(head, variables, test_x)
    k_nn, k_sn, k_ss = phi_train @ phi_train.T, phi_test @ phi_train.T, phi_test @ phi_test.T
    exact = k_ss - k_sn @ np.linalg.solve(k_nn + ridge * np.eye(len(train_x)), k_sn.T)

    precision = variables[LAPLACE]["precision"]
    covariance = predictive_covariance(precision, jnp.asarray(phi_test, jnp.float32), ridge)
    np.testing.assert_allclose(covariance, exact, rtol=1e-4, atol=1e-5)
    _, extras = head.apply(variables, test_x, train=False)
    for k in range(K):  # the shared covariance gives every class the same variance
        np.testing.assert_allclose(extras["variance"][:, k], np.diag(exact), rtol=1e-4, atol=1e-6)


def test_exact_precision_update_is_the_sum_over_batches():
    ridge = 2.0
    head = _head(ridge=ridge)
    batches = [_data(2, 8), _data(3, 5)]
    variables = head.init(jax.random.key(0), batches[0], train=False)
    np.testing.assert_array_equal(variables[LAPLACE]["precision"], ridge * np.eye(F))
    trained = _train_on(head, variables, batches)
    expected = ridge * np.eye(F)
    for x in batches:
        phi = _features(head, variables, x)
        for row in phi:  # a naive per-example loop
            expected += np.outer(row, row)
    np.testing.assert_allclose(trained[LAPLACE]["precision"], expected, rtol=1e-5, atol=1e-5)


def test_momentum_precision_update_is_the_moving_average_of_batch_means():
    ridge, m = 1.0, 0.9
    head = _head(ridge=ridge, momentum=m)
    batches = [_data(4, 8), _data(5, 5), _data(6, 3)]
    variables = head.init(jax.random.key(0), batches[0], train=False)
    trained = _train_on(head, variables, batches)
    expected = ridge * np.eye(F)
    for x in batches:
        phi = _features(head, variables, x)
        expected = m * expected + (1 - m) * phi.T @ phi / len(phi)
    np.testing.assert_allclose(trained[LAPLACE]["precision"], expected, rtol=1e-5, atol=1e-6)


def _per_class_head(link, seed, ridge=1.0):
    """A per-class GP head with random output weights (so that the Hessian weights differ
    between classes), trained on one batch: ``(head, variables, trained, x, kernel)``."""
    head = _head(ridge=ridge, precision="per_class", link=link)
    x = _data(seed, 10)
    variables = head.init(jax.random.key(0), x, train=False)
    kernel = jax.random.normal(jax.random.key(seed + 1), (F, K))
    variables = {**variables, "params": {**variables["params"], "output": {
        "kernel": kernel, "bias": jnp.zeros(K)}}}  # fmt: skip
    return head, variables, _train_on(head, variables, [x]), x, kernel


def test_per_class_precision_gives_one_laplace_precision_per_class():
    ridge = 1.0
    head, variables, trained, x, kernel = _per_class_head("softmax", 7, ridge)
    test_x = _data(8, 5)
    phi = _features(head, variables, x)
    logits = phi @ np.asarray(kernel, np.float64)
    expected = np.stack([ridge * np.eye(F)] * K)
    for i in range(len(x)):
        p = np.exp(logits[i] - logits[i].max())
        p /= p.sum()
        for k in range(K):
            expected[k] += p[k] * (1 - p[k]) * np.outer(phi[i], phi[i])
    precision = trained[LAPLACE]["precision"]
    assert precision.shape == (K, F, F)
    np.testing.assert_allclose(precision, expected, rtol=1e-4, atol=1e-5)

    phi_test = _features(head, variables, test_x)
    _, extras = head.apply(trained, test_x, train=False)
    for k in range(K):
        variance = ridge * np.einsum("nf,fg,ng->n", phi_test, np.linalg.inv(expected[k]), phi_test)
        np.testing.assert_allclose(extras["variance"][:, k], variance, rtol=1e-3, atol=1e-6)


def test_sigmoid_hessian_weights_are_p_times_one_minus_p():
    logits = np.asarray(jax.random.normal(jax.random.key(13), (6, K)), np.float64) * 3.0
    p = 1.0 / (1.0 + np.exp(-logits))  # independent labels: one sigmoid per class
    weights = hessian_weights(jnp.asarray(logits, jnp.float32), "sigmoid")
    assert weights.shape == (6, K)
    np.testing.assert_allclose(weights, p * (1 - p), rtol=1e-5, atol=1e-7)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    np.testing.assert_allclose(
        hessian_weights(jnp.asarray(logits, jnp.float32)), softmax * (1 - softmax), rtol=1e-5
    )


def test_sigmoid_link_weighs_each_class_precision_by_its_own_sigmoid():
    ridge = 1.0
    head, variables, trained, x, kernel = _per_class_head("sigmoid", 14, ridge)
    phi = _features(head, variables, x)
    p = 1.0 / (1.0 + np.exp(-(phi @ np.asarray(kernel, np.float64))))  # [N, K]
    expected = np.stack([ridge * np.eye(F)] * K)
    for i in range(len(x)):
        for k in range(K):
            expected[k] += p[i, k] * (1 - p[i, k]) * np.outer(phi[i], phi[i])
    np.testing.assert_allclose(trained[LAPLACE]["precision"], expected, rtol=1e-4, atol=1e-5)


def test_predictive_variance_by_cholesky_matches_the_inverse():
    a = np.asarray(jax.random.normal(jax.random.key(10), (F, F)), np.float64)
    precision = a @ a.T + np.eye(F)
    phi = np.asarray(jax.random.normal(jax.random.key(11), (7, F)), np.float64)
    variance = predictive_variance(jnp.asarray(precision, jnp.float32), jnp.asarray(phi), 3.0)
    expected = 3.0 * np.einsum("nf,fg,ng->n", phi, np.linalg.inv(precision), phi)
    np.testing.assert_allclose(variance, expected, rtol=1e-3)


def test_mean_field_logits_and_reset_closed_forms():
    logits = jnp.array([[2.0, -1.0], [0.5, 0.0]])
    variance = jnp.array([[3.0, 3.0], [0.0, 1.0]])
    np.testing.assert_allclose(
        mean_field_logits(logits, variance, np.pi / 8),
        np.asarray(logits) / np.sqrt(1 + np.pi / 8 * np.asarray(variance)),
        rtol=1e-6,
    )
    per_class = init_precision(5, 1.0, num_classes=3) + 7.0
    np.testing.assert_array_equal(reset_precision(per_class, 0.5), np.stack([0.5 * np.eye(5)] * 3))


def test_training_returns_no_variance_and_evaluation_needs_no_mutable():
    head = _head()
    x = _data(12, 4)
    variables = head.init(jax.random.key(0), x, train=False)
    (logits, extras), _ = head.apply(variables, x, train=True, mutable=[LAPLACE])
    assert logits.shape == (4, K) and extras == {}
    logits, extras = head.apply(variables, x, train=False)
    assert extras["variance"].shape == (4, K)
    assert "random_features" in variables and "features" not in variables["params"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"precision": "gaussian"}, "precision"),
        ({"link": "probit"}, "link"),
        ({"ridge": 0.0}, "ridge"),
        ({"momentum": 1.0}, "momentum"),
    ],
)
def test_bad_settings_are_usage_errors(kwargs, match):
    with pytest.raises(UsageError, match=match):
        _head(**kwargs).init(jax.random.key(0), _data(0, 2), train=False)

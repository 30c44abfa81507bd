"""Last-layer Laplace: GGN against the exact Hessian, KFAC against the Kronecker product,
the evidence's gradient against finite differences, and tuned priors on digits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from relbench.posthoc import laplace
from tests.posthoc.conftest import TEST, VALIDATION

N, D, K = 6, 3, 4


def _problem(n=N):
    k1, k2 = jax.random.split(jax.random.key(0))
    features = jax.random.normal(k1, (n, D))
    head = jax.random.normal(k2, (D + 1, K))
    labels = jnp.arange(n) % K
    return laplace.augment(features), head, labels


def _exact_hessian(phi, head, labels):
    def loss(w):  # the summed softmax cross-entropy of the linear head, w row-major
        logits = phi @ w.reshape(head.shape)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

    return jax.hessian(loss)(head.reshape(-1))


def test_full_ggn_is_the_exact_hessian_and_kfac_of_one_example_its_kronecker_product():
    """A linear-softmax head: its GGN is its Hessian (jax.hessian); for one example the
    KFAC factors' Kronecker product is exact too."""

    @jax.jit
    def check(phi, head, labels):
        probs = jax.nn.softmax(phi @ head)
        v = jax.random.normal(jax.random.key(1), head.shape)
        ggn = laplace.full_ggn(phi, probs)
        product = laplace.ggn_vector_product(phi, probs, v).reshape(-1)
        a, g = laplace.kfac_factors(phi[:1], probs[:1])
        exact_one = _exact_hessian(phi[:1], head, labels[:1])
        return (
            ggn,
            _exact_hessian(phi, head, labels),
            product,
            ggn @ v.reshape(-1),
            (jnp.kron(a, g), exact_one),
        )

    ggn, exact, product, want, (kron, exact_one) = check(*_problem())
    np.testing.assert_allclose(ggn, exact, atol=1e-5)
    np.testing.assert_allclose(product, want, atol=1e-5)
    np.testing.assert_allclose(kron, exact_one, atol=1e-5)


@pytest.mark.parametrize("structure", laplace.STRUCTURES)
def test_evidence_gradient_matches_finite_differences_and_variances_match_dense(structure):
    phi, head, _ = _problem()
    probs = jax.nn.softmax(phi @ head)
    curvature = laplace.fit_curvature(structure, phi, probs, 8, jax.random.key(2))

    def f(u):
        return laplace.log_evidence(u, structure, curvature, head, jnp.zeros(()))

    u, h = jnp.log(0.7), 1e-2
    finite = (f(u + h) - f(u - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(f)(u), finite, rtol=2e-3)
    # The logit variances against J Sigma J^T with Sigma built densely from the structure.
    delta = 0.7
    if structure == "diag":
        covariance = jnp.diag(1.0 / (curvature["values"].reshape(-1) + delta))
    elif structure == "kfac":
        a = curvature["a_vectors"] * curvature["a_values"] @ curvature["a_vectors"].T
        g = curvature["g_vectors"] * curvature["g_values"] @ curvature["g_vectors"].T
        covariance = jnp.linalg.inv(jnp.kron(a, g) + delta * jnp.eye(head.size))
    elif structure == "lowrank":  # Ritz pairs, and the prior alone on their complement
        v, values = curvature["vectors"], curvature["values"]
        covariance = (v.T * (1.0 / (values + delta))) @ v + (jnp.eye(head.size) - v.T @ v) / delta
    else:
        covariance = jnp.linalg.inv(laplace.full_ggn(phi, probs) + delta * jnp.eye(head.size))
    jacobians = jnp.einsum("nd,kl->nkdl", phi, jnp.eye(K)).reshape(N, K, -1)  # [N, K, P]
    dense = jnp.einsum("nkp,pq,nkq->nk", jacobians, covariance, jacobians)
    got = laplace.logit_variance(structure, curvature, phi, delta)
    np.testing.assert_allclose(got, dense, rtol=2e-3, atol=1e-5)


@pytest.fixture()
def digits_outputs(digits_mlp):
    """The digits MLP's outputs on a validation and a test part."""
    model, params, x, y = digits_mlp
    outputs = model.apply({"params": params}, x, train=False)
    split = lambda o, sl: (o[0][:, sl], {k: v[:, sl] for k, v in o[1].items()})  # noqa: E731
    return split(outputs, VALIDATION), y[VALIDATION], split(outputs, TEST), y[TEST]


def _nll(outputs, labels):
    probs = jax.nn.softmax(outputs[0], -1).mean(0)
    return float(-jnp.mean(jnp.log(probs[jnp.arange(len(labels)), labels])))


def test_tuned_prior_precision_improves_test_nll_on_digits(digits_outputs, structure="kfac"):
    """Fitted on a validation split (as the post-hoc step is), tuned by its NLL, scored on
    the test split, against the untuned prior precision 1."""
    train, train_labels, test, test_labels = digits_outputs
    nll = {}
    for tuning in ("none", "nll"):
        step = laplace.make(structure=structure, prior_tuning=tuning, prior_precision=1.0)
        params = jax.jit(step.fit)(train, {"label": train_labels})
        nll[tuning] = _nll(jax.jit(step.apply)(test, params), test_labels)
        print(structure, tuning, float(jnp.exp(params["log_prior_precision"][0])), nll[tuning])
    print("map", _nll(test, test_labels))
    assert nll["nll"] < nll["none"]

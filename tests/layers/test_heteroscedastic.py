"""The heteroscedastic head against the plain head, a naive loop and quadrature."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit

from relbench.layers.gaussian_process import LAPLACE, RandomFeatureGaussianProcess
from relbench.layers.heads import DenseHead
from relbench.layers.heteroscedastic import (
    HeteroscedasticHead,
    logit_noise,
    logit_variance,
    mc_link_logits,
)
from relbench.methods.heteroscedastic import head_type
from relbench.models.layer_types import LayerTypes
from relbench.models.mlp import MLP

N, D, K, R = 5, 3, 4, 2


def _init(module, *args, **kwargs):
    return jax.jit(module.init, static_argnames="train")(*args, **kwargs)


def _apply(module, *args, **kwargs):
    return jax.jit(module.apply, static_argnames="train")(*args, **kwargs)


def _features(seed=0, n=N):
    return jax.random.normal(jax.random.key(seed), (n, D))


def _rngs(seed=1):
    return {"params": jax.random.key(seed), "heteroscedastic": jax.random.key(seed + 1)}


def _silence_noise(params):
    """Scale layers that output exactly zero noise (softplus(-1e4) == 0 in float32)."""
    params = jax.tree.map(jnp.zeros_like, params | {}) | {"mean": params["mean"]}
    params["diag_scale"]["bias"] = jnp.full_like(params["diag_scale"]["bias"], -1e4)
    return params


@pytest.mark.parametrize(("link", "parameter_efficient"), [("softmax", False), ("sigmoid", True)])
def test_zero_noise_equals_the_plain_head(link, parameter_efficient):
    head = HeteroscedasticHead(
        K, link=link, num_factors=R, parameter_efficient=parameter_efficient, min_scale=0.0
    )
    x = _features()
    params = _silence_noise(_init(head, _rngs(), x, train=False)["params"])
    plain, _ = _apply(DenseHead(K), {"params": params["mean"]}, x, train=False)
    for train in (False, True):
        logits, extras = _apply(
            head, {"params": params}, x, train=train, rngs={"heteroscedastic": jax.random.key(3)}
        )
        np.testing.assert_array_equal(extras["logit_variance"], 0.0)
        if link == "softmax":
            np.testing.assert_allclose(logits, jax.nn.log_softmax(plain), atol=2e-6)
        else:
            np.testing.assert_allclose(jax.nn.sigmoid(logits), jax.nn.sigmoid(plain), atol=1e-6)


def test_noise_matches_a_naive_loop():
    key = jax.random.key(7)
    diag = jax.random.uniform(jax.random.key(1), (N, K))
    factors = jax.random.normal(jax.random.key(2), (N, K, R))
    samples = 3
    noise = np.asarray(jax.jit(logit_noise, static_argnums=3)(key, diag, factors, samples))
    diag_key, factor_key = jax.random.split(key)
    eps_k = np.asarray(jax.random.normal(diag_key, (samples * N * K,))).reshape(samples, N, K)
    eps_r = np.asarray(jax.random.normal(factor_key, (samples * N * R,))).reshape(samples, N, R)
    for s in range(samples):
        for n in range(N):
            expected = np.asarray(diag[n]) * eps_k[s, n] + np.asarray(factors[n]) @ eps_r[s, n]
            np.testing.assert_allclose(noise[s, n], expected, rtol=1e-5, atol=1e-6)
    variance = logit_variance(diag, factors)
    np.testing.assert_allclose(variance, diag**2 + np.sum(np.asarray(factors) ** 2, -1), 1e-6)


def _gauss_expectation(f, mean, variance, points=200):
    """E[f(u)] for u ~ N(mean, variance), by Gauss-Hermite quadrature (float64)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)
    u = mean[..., None] + np.sqrt(variance)[..., None] * nodes
    return np.sum(weights * f(u), axis=-1) / np.sqrt(2 * np.pi)


def _two_class_problem():
    mean = np.array([[0.5, -1.0], [2.0, 2.5], [-3.0, 1.0]])
    diag = np.array([[0.3, 1.2], [2.0, 0.5], [1.0, 1.0]])
    factors = np.array([[[0.4], [-0.8]], [[1.5], [0.2]], [[0.0], [0.7]]])
    return mean, diag, factors


SAMPLES = 200_000


def _mc_logits(seed, mean, diag, factors, temperature, link):
    noise = jax.jit(logit_noise, static_argnums=3)(
        jax.random.key(seed), jnp.asarray(diag), jnp.asarray(factors), SAMPLES
    )
    logits = jax.jit(mc_link_logits, static_argnums=(2, 3))(
        jnp.asarray(mean), noise, temperature, link
    )
    return np.asarray(logits, np.float64)


def _assert_converged(estimate, link, mean, variance):
    """Within 4 standard errors of the quadrature value, which the noise moves far."""
    exact = _gauss_expectation(link, mean, variance)
    second_moment = _gauss_expectation(lambda u: link(u) ** 2, mean, variance)
    standard_error = np.sqrt((second_moment - exact**2) / SAMPLES)
    assert np.all(np.abs(estimate - exact) < 4 * standard_error)
    assert np.all(np.abs(link(mean) - exact) > 20 * standard_error)


def test_softmax_mc_estimate_converges_to_quadrature_on_two_classes():
    mean, diag, factors = _two_class_problem()
    temperature = 1.5
    logits = _mc_logits(0, mean, diag, factors, temperature, "softmax")
    # softmax([u0, u1] / T)_1 = sigmoid((u1 - u0) / T), and u1 - u0 is Gaussian.
    difference_variance = (
        diag[:, 0] ** 2 + diag[:, 1] ** 2 + np.sum((factors[:, 1] - factors[:, 0]) ** 2, -1)
    )
    link = lambda u: expit(u / temperature)  # noqa: E731
    _assert_converged(np.exp(logits)[:, 1], link, mean[:, 1] - mean[:, 0], difference_variance)


def test_sigmoid_mc_estimate_converges_to_quadrature():
    mean, diag, factors = _two_class_problem()
    logits = _mc_logits(1, mean, diag, factors, 1.0, "sigmoid")
    _assert_converged(expit(logits), expit, mean, diag**2 + np.sum(factors**2, -1))


def test_parameter_efficient_variant_has_fewer_parameters():
    def count(parameter_efficient):
        head = HeteroscedasticHead(K, num_factors=R, parameter_efficient=parameter_efficient)
        params = _init(head, _rngs(), _features(), train=False)["params"]
        return sum(p.size for p in jax.tree.leaves(params))

    loc_and_diag = 2 * (D * K + K)
    assert count(False) == loc_and_diag + D * K * R + K * R
    assert count(True) == loc_and_diag + K * R + D * K + K


def test_noise_comes_from_the_named_stream():
    head = HeteroscedasticHead(K, num_factors=R, rng_stream="label_noise")
    x = _features()
    variables = _init(
        head, {"params": jax.random.key(0), "label_noise": jax.random.key(1)}, x, train=True
    )
    keys = jnp.stack([jax.random.key(5), jax.random.key(5), jax.random.key(6)])

    def apply(key):
        return head.apply(variables, x, train=True, rngs={"label_noise": key})[0]

    first, again, other = jax.jit(jax.vmap(apply))(keys)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    with pytest.raises(Exception, match="label_noise"):
        jax.eval_shape(functools.partial(head.apply, train=True), variables, x)


def test_hetsngp_adds_the_gp_variance_in_evaluation_only():
    # HetSNGP [3] by composition: the SNGP head computes the mean logits, its posterior
    # variance joins the diagonal noise at test time. With the heteroscedastic noise
    # silenced, the test-time output is the MC estimate of E[softmax(u)], u ~ N(mu, var),
    # which on two classes is a 1-D Gaussian expectation (quadrature).
    gp = functools.partial(RandomFeatureGaussianProcess, num_features=32, ridge=0.05)
    head = HeteroscedasticHead(
        2, num_factors=0, min_scale=0.0, test_mc_samples=200_000, loc=gp, loc_variance="variance"
    )
    x = 3 * _features()
    variables = _init(head, _rngs(), x, train=False)
    variables = {**variables, "params": _silence_noise(variables["params"])}
    loc_variables = {name: tree["mean"] for name, tree in variables.items()}
    rngs = {"heteroscedastic": jax.random.key(4)}

    train_logits, updates = jax.jit(
        lambda v: head.apply(v, x, train=True, rngs=rngs, mutable=[LAPLACE])
    )(variables)
    (gp_train_logits, _), _ = jax.jit(lambda v: gp(2).apply(v, x, train=True, mutable=[LAPLACE]))(
        loc_variables
    )
    np.testing.assert_allclose(train_logits[0], jax.nn.log_softmax(gp_train_logits), atol=2e-6)
    assert not np.allclose(
        updates[LAPLACE]["mean"]["precision"], variables[LAPLACE]["mean"]["precision"]
    )

    mean, extras = _apply(gp(2), loc_variables, x, train=False)
    test_logits, test_extras = _apply(head, variables, x, train=False, rngs=rngs)
    np.testing.assert_array_equal(test_extras["variance"], extras["variance"])
    variance = np.asarray(extras["variance"], np.float64)
    difference = np.asarray(mean[:, 1] - mean[:, 0], np.float64)
    assert np.all(variance > 0.1)  # the GP's variance matters here
    exact = _gauss_expectation(expit, difference, variance[:, 0] + variance[:, 1])
    np.testing.assert_allclose(np.exp(test_logits[:, 1]), exact, atol=4e-3)
    assert np.max(np.abs(expit(difference) - exact)) > 0.02  # without the GP variance


def test_in_a_multi_member_model_with_plain_dense_layers():
    # The composition a BatchEnsemble method configures, with its dense type (here the
    # plain one) in both the loc head and the noise-scale layers.
    head = head_type(
        num_factors=R, loc=functools.partial(DenseHead, dense=nn.Dense), dense=nn.Dense
    )
    model = MLP(K, hidden_sizes=(8,), layers=LayerTypes(head=head, ensemble_size=3))
    x = _features()
    variables = _init(model, _rngs(), x, train=False)
    logits, extras = _apply(
        model, variables, x, train=False, rngs={"heteroscedastic": jax.random.key(0)}
    )
    assert logits.shape == (3, N, K) and extras["logit_variance"].shape == (3, N, K)
    np.testing.assert_allclose(jax.nn.logsumexp(logits, -1), 0.0, atol=1e-5)  # log p, normalized

"""Variational dense/conv layers: means, KL, and the Flipout variance reduction."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from relbench.errors import UsageError
from relbench.layers import variational as vl
from relbench.ppl.random_variable import distrax

KEY = jax.random.key(0)


def _normal(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape)


def test_normal_kl_matches_distrax_closed_form():
    k1, k2 = jax.random.split(KEY)
    loc, scale = _normal(k1, (5, 4)), jax.nn.softplus(_normal(k2, (5, 4)))
    prior = vl.NormalPrior(loc=0.3, scale=1.5)
    reference = distrax.Normal(loc, scale).kl_divergence(distrax.Normal(0.3, 1.5)).sum()
    np.testing.assert_allclose(prior.kl(loc, scale), reference, rtol=1e-5)
    assert vl.kl_divergence(prior, loc, scale, sample=None) == prior.kl(loc, scale)


def test_scale_mixture_kl_is_the_monte_carlo_log_ratio():
    k1, k2, k3 = jax.random.split(KEY, 3)
    loc, scale = _normal(k1, (6,)), jax.nn.softplus(_normal(k2, (6,)))
    sample = loc + scale * jax.random.normal(k3, (6,))
    prior = vl.ScaleMixturePrior(weight=0.3, scale1=1.0, scale2=0.1)
    w = np.asarray(sample, np.float64)
    log_p = np.log(0.3 * stats.norm(0, 1.0).pdf(w) + 0.7 * stats.norm(0, 0.1).pdf(w)).sum()
    log_q = stats.norm(np.asarray(loc), np.asarray(scale)).logpdf(w).sum()
    np.testing.assert_allclose(
        vl.kl_divergence(prior, loc, scale, sample), log_q - log_p, rtol=1e-5
    )


def test_monte_carlo_kl_averages_to_the_closed_form():
    """The MC estimator (a Normal prior without its closed form) is unbiased."""

    class NoClosedForm:
        log_prob = vl.NormalPrior(0.0, 0.7).log_prob

    k1, k2 = jax.random.split(KEY)
    loc, scale = _normal(k1, (3,), 0.5), jnp.array([0.2, 0.5, 0.9])
    samples = loc + scale * jax.random.normal(k2, (20000, 3))
    estimates = jax.vmap(lambda s: vl.kl_divergence(NoClosedForm(), loc, scale, s))(samples)
    standard_error = estimates.std() / np.sqrt(len(estimates))
    exact = vl.NormalPrior(0.0, 0.7).kl(loc, scale)
    assert abs(estimates.mean() - exact) < 4 * standard_error


def test_softplus_inverse_inverts():
    x = jnp.array([1e-3, 0.1, 1.0, 5.0])
    np.testing.assert_allclose(jax.nn.softplus(vl.softplus_inverse(x)), x, rtol=1e-5)


DENSE = vl.matmul_kernel
CONV = vl.conv_kernel((1, 1), "SAME")


@pytest.mark.parametrize(
    "apply_kernel, x_shape, k_shape, sign_in_shape, sign_out_shape",
    [
        (DENSE, (8, 5), (5, 3), (8, 5), (8, 3)),
        (CONV, (4, 6, 6, 2), (3, 3, 2, 3), (4, 1, 1, 2), (4, 1, 1, 3)),
    ],
)
def test_estimators_average_to_the_posterior_mean_layer(
    apply_kernel, x_shape, k_shape, sign_in_shape, sign_out_shape
):
    """Both estimators are affine in eps: the pair (eps, -eps) averages exactly to the
    deterministic layer with the posterior-mean kernel."""
    ks = jax.random.split(KEY, 5)
    x, loc, dw = _normal(ks[0], x_shape), _normal(ks[1], k_shape), _normal(ks[2], k_shape, 0.3)
    s_in = vl.rademacher(ks[3], sign_in_shape, jnp.float32)
    s_out = vl.rademacher(ks[4], sign_out_shape, jnp.float32)
    mean = apply_kernel(x, loc)
    for estimator in (
        lambda d: vl.reparameterization(apply_kernel, x, loc, d),
        lambda d: vl.flipout(apply_kernel, x, loc, d, s_in, s_out),
    ):
        np.testing.assert_allclose((estimator(dw) + estimator(-dw)) / 2, mean, atol=1e-5)
        assert not np.allclose(estimator(dw), mean, atol=1e-3)  # it does perturb


def test_flipout_per_example_kernels_match_explicit_kernels():
    """Flipout's row n equals x_n (loc + dW * (s_n r_n^T)) computed naively."""
    ks = jax.random.split(KEY, 5)
    x, loc, dw = _normal(ks[0], (6, 4)), _normal(ks[1], (4, 3)), _normal(ks[2], (4, 3))
    s = vl.rademacher(ks[3], (6, 4), jnp.float32)
    r = vl.rademacher(ks[4], (6, 3), jnp.float32)
    got = vl.flipout(DENSE, x, loc, dw, s, r)
    for n in range(6):
        kernel_n = loc + dw * jnp.outer(s[n], r[n])
        np.testing.assert_allclose(got[n], x[n] @ kernel_n, atol=1e-5)


@pytest.mark.parametrize("estimator", vl.ESTIMATORS)
def test_dense_module_mean_equals_deterministic_dense(estimator):
    layer = vl.VariationalDense(3, vl.VariationalSpec(estimator, stddev_init=0.2))
    x = _normal(KEY, (4, 5))
    variables = layer.init(KEY, x)
    params = variables["params"]
    dense = nn.Dense(3).apply(
        {"params": {"kernel": params["kernel_loc"], "bias": params["bias"]}}, x
    )
    np.testing.assert_allclose(layer.apply(variables, x, deterministic=True), dense, atol=1e-6)
    keys = jax.random.split(jax.random.key(1), 1000)
    sample = jax.jit(jax.vmap(lambda k: layer.apply(variables, x, rngs={"variational": k})))
    samples = sample(keys)
    standard_error = samples.std(0) / np.sqrt(len(keys))
    assert np.all(np.abs(samples.mean(0) - dense) < 5 * standard_error + 1e-6)


@pytest.mark.parametrize("estimator", vl.ESTIMATORS)
def test_conv_module_deterministic_equals_flax_conv(estimator):
    spec = vl.VariationalSpec(estimator)
    layer = vl.VariationalConv(4, (3, 3), strides=2, padding="SAME", variational=spec)
    x = _normal(KEY, (2, 7, 7, 3))
    variables = layer.init(KEY, x)
    p = variables["params"]
    conv = nn.Conv(4, (3, 3), strides=2, padding="SAME")
    reference = conv.apply({"params": {"kernel": p["kernel_loc"], "bias": p["bias"]}}, x)
    np.testing.assert_allclose(layer.apply(variables, x, deterministic=True), reference, atol=1e-5)
    sampled = layer.apply(variables, x, rngs={"variational": KEY})
    assert sampled.shape == reference.shape


@pytest.mark.parametrize(
    "layer", [vl.DenseFlipout(3), vl.ConvReparameterization(2, (3, 3))], ids=["dense", "conv"]
)
def test_kl_is_sown_once_in_closed_form_and_not_kept_in_variables(layer):
    x = _normal(KEY, (2, 5) if isinstance(layer, vl.VariationalDense) else (2, 5, 5, 1))
    variables = layer.init({"params": KEY, "variational": KEY}, x)
    assert set(variables) == {"params"}

    def twice(module, x):  # shared weights used twice: their KL counts once
        return module(x), module(x)

    _, state = nn.apply(twice, layer, mutable=["losses"])(
        variables, x, rngs={"variational": jax.random.key(3)}
    )
    p = variables["params"]
    expected = vl.NormalPrior().kl(p["kernel_loc"], vl.posterior_scale(p["kernel_raw_scale"]))
    np.testing.assert_allclose(state["losses"]["kl"], expected, rtol=1e-6)


def test_missing_rng_stream_is_a_usage_error():
    layer = vl.DenseFlipout(3)
    variables = layer.init(KEY, jnp.ones((1, 2)))
    with pytest.raises(UsageError, match="'variational' RNG stream"):
        layer.apply(variables, jnp.ones((1, 2)))
    with pytest.raises(UsageError, match="unknown estimator"):
        vl.VariationalDense(3, vl.VariationalSpec("local")).apply(
            variables, jnp.ones((1, 2)), rngs={"variational": KEY}
        )


def test_flipout_gradient_variance_is_lower_than_reparameterization():
    """Measured on a fixed regression problem: the variance over weight noise of the
    minibatch gradient w.r.t. the posterior mean and scale, averaged over weights."""
    k1, k2, k3 = jax.random.split(KEY, 3)
    x = _normal(k1, (64, 8))
    y = x @ _normal(k2, (8, 4))
    variances = {}
    for estimator in vl.ESTIMATORS:
        spec = vl.VariationalSpec(estimator, stddev_init=0.5)
        layer = vl.VariationalDense(4, spec, use_bias=False)
        params = layer.init(k3, x)["params"]

        def loss(params, key, layer=layer):
            out = layer.apply({"params": params}, x, rngs={"variational": key})
            return jnp.mean((out - y) ** 2)

        keys = jax.random.split(jax.random.key(7), 256)
        grads = jax.jit(jax.vmap(functools.partial(jax.grad(loss), params)))(keys)
        variances[estimator] = {k: float(g.var(0).mean()) for k, g in grads.items()}
    for name in ("kernel_loc", "kernel_raw_scale"):
        flip, reparam = variances["flipout"][name], variances["reparameterization"][name]
        print(f"{name}: var flipout {flip:.3g} / reparameterization {reparam:.3g}")
        assert flip < reparam

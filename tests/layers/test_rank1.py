"""Rank-1 BNN layers: closed-form KL, zero variance == BatchEnsemble, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from relbench.layers import rank1
from relbench.layers.batchensemble import BatchEnsembleConv, BatchEnsembleDense
from relbench.layers.members import split_members, tile_members

M, B = 3, 4


def _numerical_kl(p, q):
    """KL(p || q) by quadrature over the real line (an independent reference)."""
    integrand = lambda t: p.pdf(t) * (p.logpdf(t) - q.logpdf(t))  # noqa: E731
    return integrate.quad(integrand, -np.inf, np.inf, limit=500, epsabs=1e-12)[0]


@pytest.mark.parametrize(
    "loc,scale,prior_loc,prior_scale",
    [(0.3, 0.5, 1.0, 1.0), (-1.0, 0.1, 1.0, 0.5), (2.0, 2.0, 1.0, 0.3)],
)
def test_gaussian_and_cauchy_kl_equal_quadrature(loc, scale, prior_loc, prior_scale):
    gaussian = rank1.gaussian_kl(loc, scale, prior_loc, prior_scale)
    want = _numerical_kl(stats.norm(loc, scale), stats.norm(prior_loc, prior_scale))
    np.testing.assert_allclose(gaussian, want, rtol=1e-5)
    cauchy = rank1.cauchy_kl(loc, scale, prior_loc, prior_scale)
    want = _numerical_kl(stats.cauchy(loc, scale), stats.cauchy(prior_loc, prior_scale))
    np.testing.assert_allclose(cauchy, want, rtol=1e-5)


def _softplus(x):
    return np.log1p(np.exp(np.asarray(x, np.float64)))


@pytest.mark.parametrize("posterior", ["gaussian", "cauchy"])
def test_sown_kl_equals_closed_form_sum_over_members(posterior):
    layer = rank1.Rank1Dense(
        4, ensemble_size=M, posterior=posterior, prior_scale=0.5, posterior_scale_init=0.2
    )
    x = jnp.ones((M * B, 5))
    rngs = {"params": jax.random.key(0), rank1.RNG_STREAM: jax.random.key(1)}
    variables = layer.init(rngs, x)
    _, updates = layer.apply(variables, x, rngs=rngs, mutable=[rank1.KL_COLLECTION])
    p = variables["params"]
    want = 0.0
    for name in ("alpha", "gamma"):
        loc, scale = np.asarray(p[f"{name}_loc"], np.float64), _softplus(p[f"{name}_scale"])
        if posterior == "gaussian":
            want += np.sum(np.log(0.5 / scale) + (scale**2 + (loc - 1) ** 2) / (2 * 0.25) - 0.5)
        else:
            want += np.sum(np.log(((scale + 0.5) ** 2 + (loc - 1) ** 2) / (4 * scale * 0.5)))
    np.testing.assert_allclose(rank1.kl_sum(updates), want, rtol=1e-5)


def _zero_variance(params):
    return {k: jnp.full_like(v, -jnp.inf) if k.endswith("_scale") else v for k, v in params.items()}


@pytest.mark.parametrize("posterior", ["gaussian", "cauchy"])
@pytest.mark.parametrize(
    "rank1_layer,be_layer,shape,shared",
    [
        (
            rank1.Rank1Dense(4, ensemble_size=M),
            BatchEnsembleDense(4, ensemble_size=M),
            (M * B, 5),
            "Dense_0",
        ),
        (
            rank1.Rank1Conv(4, (3, 3), ensemble_size=M),
            BatchEnsembleConv(4, (3, 3), ensemble_size=M),
            (M * B, 5, 5, 2),
            "Conv_0",
        ),
    ],
)
def test_zero_posterior_variance_is_batchensemble(posterior, rank1_layer, be_layer, shape, shared):
    layer = rank1_layer.clone(
        ensemble_size=M, posterior=posterior, bias_init=jax.nn.initializers.normal(1.0)
    )
    be_layer = be_layer.clone(ensemble_size=M)
    x = jax.random.normal(jax.random.key(0), shape)
    rngs = {"params": jax.random.key(1), rank1.RNG_STREAM: jax.random.key(2)}
    p = _zero_variance(layer.init(rngs, x)["params"])
    got = layer.apply({"params": p}, x, rngs=rngs)
    be_params = {
        shared: p[shared],
        "alpha": p["alpha_loc"],
        "gamma": p["gamma_loc"],
        "bias": p["bias"],
    }
    want = be_layer.apply({"params": be_params}, x)
    np.testing.assert_array_equal(got, want)


def test_every_row_draws_its_own_factors():
    layer = rank1.Rank1Dense(4, ensemble_size=M, posterior_scale_init=0.5)
    x = tile_members(jnp.ones((1, 5)), M * B)  # every row the same example
    rngs = {"params": jax.random.key(0), rank1.RNG_STREAM: jax.random.key(1)}
    y = split_members(layer.apply(layer.init(rngs, x), x, rngs=rngs), M)
    assert not np.allclose(y[0, 0], y[0, 1])  # same member, same input, new draw
    assert np.all(np.isfinite(y))

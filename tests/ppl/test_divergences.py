"""KL divergences: analytic against Monte Carlo for every registered pair, and the
layers' KLs against distrax's."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import ppl
from relbench.layers import rank1
from relbench.layers import variational as vl
from relbench.ppl import divergences
from relbench.ppl.random_variable import distrax, tfd

KEY = jax.random.key(0)
N = 4000

#: The registered closed forms of the ppl families the layers use as posteriors and
#: priors (q first), and of the discrete families.
REGISTERED = {
    "normal": (distrax.Normal(jnp.array([0.3, -1.0]), 0.7), distrax.Normal(0.0, 1.2)),
    "laplace": (distrax.Laplace(jnp.array([0.5, 0.0]), 0.4), distrax.Laplace(0.1, 1.0)),
    "cauchy": (tfd.Cauchy(jnp.array([0.2, 1.5]), 0.5), tfd.Cauchy(1.0, 0.8)),
    "mvn_diag": (
        distrax.MultivariateNormalDiag(jnp.array([0.1, 0.4]), jnp.array([0.5, 2.0])),
        distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2)),
    ),
    "categorical": (
        distrax.Categorical(logits=jnp.array([0.3, -0.2, 1.0])),
        distrax.Categorical(logits=jnp.zeros(3)),
    ),
}


@pytest.mark.parametrize("pair", sorted(REGISTERED))
def test_analytic_kl_agrees_with_monte_carlo_within_4_standard_errors(pair):
    q, p = REGISTERED[pair]
    exact = divergences.analytic_kl(q, p)
    assert exact is not None
    samples = q.sample(seed=KEY, sample_shape=(N,))
    batch_axes = tuple(range(1, samples.ndim - len(q.event_shape)))
    estimates = (q.log_prob(samples) - p.log_prob(samples)).sum(batch_axes)  # [N]
    np.testing.assert_allclose(
        divergences.monte_carlo_kl(q, p, samples[0]), estimates[0], rtol=1e-5, atol=1e-6
    )
    standard_error = estimates.std() / np.sqrt(N)
    assert abs(float(estimates.mean() - exact)) < 4 * float(standard_error)


def test_unregistered_pair_falls_back_to_monte_carlo():
    q = ppl.Normal(jnp.zeros(3), 0.5, key=KEY)
    prior = tfd.StudentT(3.0, 0.0, 1.0)
    assert divergences.analytic_kl(q, prior) is None
    want = jnp.sum(q.distribution.log_prob(q.value) - prior.log_prob(q.value))
    np.testing.assert_allclose(divergences.kl_divergence(q, prior), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ppl.random_variable.UsageError, match="no closed form"):
        divergences.kl_divergence(q.distribution, prior)


@pytest.mark.parametrize("prior", ["normal", "student_t", "mixture"])
def test_variational_layer_kl_equals_distrax(prior):
    priors = {
        "normal": vl.NormalPrior(0.2, 0.8),
        "laplace": vl.WeightPrior(ppl.Laplace, (("loc", 0.0), ("scale", 0.5))),
        "student_t": vl.WeightPrior(ppl.StudentT, (("df", 3.0), ("loc", 0.0), ("scale", 1.0))),
        "horseshoe": vl.WeightPrior(ppl.Horseshoe, (("scale", 1.0),)),
        "mixture": vl.ScaleMixturePrior(0.3, 1.0, 0.1),
    }
    spec = vl.VariationalSpec("reparameterization", prior=priors[prior], stddev_init=0.1)
    layer = vl.VariationalDense(3, spec)
    x = jnp.ones((2, 4))
    variables = layer.init(KEY, x)
    with ppl.tape() as rvs:
        _, state = layer.apply(variables, x, rngs={"variational": KEY}, mutable=["losses"])
    p = variables["params"]
    q = distrax.Normal(p["kernel_loc"], jax.nn.softplus(p["kernel_raw_scale"]))
    reference = priors[prior].distribution()
    if prior == "normal":
        want = q.kl_divergence(reference).sum()
    else:  # the one-sample estimate at the layer's own kernel sample, from the tape
        w = rvs["kernel"].value
        want = q.log_prob(w).sum() - reference.log_prob(w).sum()
    np.testing.assert_allclose(state["losses"]["kl"], want, rtol=1e-5)


@pytest.mark.parametrize("posterior", ["gaussian", "cauchy"])
def test_rank1_kl_equals_distrax(posterior):
    loc, scale = jnp.array([[0.8, 1.3]]), jnp.array([[0.1, 0.4]])
    family = {"gaussian": distrax.Normal, "cauchy": tfd.Cauchy}[posterior]
    want = family(loc, scale).kl_divergence(family(1.0, 0.5)).sum()
    np.testing.assert_allclose(rank1.factor_kl(loc, scale, 0.5, posterior), want, rtol=1e-6)


def test_tape_records_a_models_weight_random_variables_by_name():
    class TwoLayers(nn.Module):
        @nn.compact
        def __call__(self, x):
            return vl.DenseFlipout(2)(jnp.tanh(vl.DenseReparameterization(3)(x)))

    model, x = TwoLayers(), jnp.ones((2, 5))
    variables = model.init({"params": KEY, "variational": KEY}, x)
    with ppl.tape() as rvs:
        model.apply(variables, x, rngs={"variational": KEY})
    assert list(rvs) == ["DenseReparameterization_0/kernel", "DenseFlipout_0/kernel"]
    kernel = rvs["DenseFlipout_0/kernel"]
    np.testing.assert_array_equal(
        kernel.distribution.loc, variables["params"]["DenseFlipout_0"]["kernel_loc"]
    )

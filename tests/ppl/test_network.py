"""A relbench network as a probabilistic program: tape, log joint, NUTS."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from relbench import ppl
from relbench.methods.likelihoods import Gaussian
from relbench.models import MLP
from relbench.ppl import network, sampling
from relbench.ppl.priors import NormalPrior

PRIOR_SCALE, NOISE = 1.5, 0.5
MODEL = MLP(num_classes=1, hidden_sizes=())  # Bayesian linear regression: y = x w + b


def _data():
    x = jax.random.normal(jax.random.key(0), (20, 2))
    y = x @ jnp.array([1.0, -0.5]) + 0.3 + NOISE * jax.random.normal(jax.random.key(1), (20,))
    return {"input": x, "label": y[:, None]}


def _apply(params, x):
    logits, _ = MODEL.apply({"params": params}, x, train=False)  # [1, B, 1]
    return logits, {"variance": jnp.full_like(logits, NOISE**2)}


def _setup():
    batch = _data()
    template = MODEL.init(jax.random.key(2), batch["input"], train=False)["params"]
    prior = NormalPrior(0.0, PRIOR_SCALE)
    return batch, template, network.log_density(_apply, template, prior, Gaussian())


def _closed_form(batch):
    """The exact Gaussian posterior over (w, b)."""
    phi = np.concatenate([np.asarray(batch["input"], np.float64), np.ones((20, 1))], 1)
    y = np.asarray(batch["label"], np.float64)[:, 0]
    precision = np.eye(3) / PRIOR_SCALE**2 + phi.T @ phi / NOISE**2
    covariance = np.linalg.inv(precision)
    return phi, y, covariance @ phi.T @ y / NOISE**2, covariance


def _flat(params):  # (kernel [2, 1], bias [1]) -> [w1, w2, b]
    leaves = network.named(params)
    kernel = next(v for k, v in leaves.items() if k.endswith("kernel"))
    bias = next(v for k, v in leaves.items() if k.endswith("bias"))
    return jnp.concatenate([kernel.reshape(kernel.shape[:-2] + (-1,)), bias], -1)


def test_tape_records_every_weight_and_log_joint_is_the_closed_form_density():
    batch, template, density = _setup()
    program = network.network_program(_apply, template, NormalPrior(0.0, PRIOR_SCALE), Gaussian())
    with ppl.seed(jax.random.key(3)), ppl.tape() as rvs:
        program(batch)
    names = network.parameter_names(template)
    assert list(rvs) == [*names, "y"] and len(names) == 2
    params = jax.tree.map(lambda p: jax.random.normal(jax.random.key(4), p.shape), template)
    phi, y, _, _ = _closed_form(batch)
    theta = np.asarray(_flat(params), np.float64)
    want = (
        stats.norm(0, PRIOR_SCALE).logpdf(theta).sum()
        + stats.norm(phi @ theta, NOISE).logpdf(y).sum()
    )
    np.testing.assert_allclose(jax.jit(density)(params, batch), want, rtol=1e-5)


def test_nuts_recovers_the_closed_form_posterior():
    batch, template, density = _setup()
    _, _, mean, covariance = _closed_form(batch)
    posterior = sampling.nuts(
        lambda p: density(p, batch), template, jax.random.key(5), num_warmup=150, num_samples=300
    )
    draws = np.asarray(_flat(posterior.samples), np.float64).reshape(-1, 3)  # [C*S, 3]
    ess = float(posterior.min_ess)
    assert float(posterior.max_rhat) < 1.05 and ess > 150
    sd = np.sqrt(np.diag(covariance))
    # Monte Carlo error: the mean's standard error is sd / sqrt(ESS); a (co)variance's
    # relative standard error is about sqrt(2 / ESS) (Gaussian fourth moments).
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * sd / np.sqrt(ess))
    np.testing.assert_allclose(
        np.cov(draws.T), covariance, atol=4 * np.sqrt(2 / ess) * np.outer(sd, sd).max()
    )

"""A probabilistic language over distrax: random variables, tracing, log joints.

import relbench.ppl as rb

def model(x):
    w = rb.Normal(jnp.zeros(3), 1.0, name="w")
    return rb.Normal(x @ w, 0.5, name="y")

with rb.seed(jax.random.key(0)), rb.tape() as rvs:
    model(x)                                   # samples w, y; rvs["w"], rvs["y"]
log_joint = rb.make_log_joint_fn(model)        # pure: log_joint({"w": w, "y": y}, x)
"""

from relbench.ppl.divergences import kl_divergence
from relbench.ppl.log_joint import make_log_joint_fn
from relbench.ppl.random_variable import (
    Bernoulli,
    Beta,
    Categorical,
    Cauchy,
    Dirichlet,
    Exponential,
    Gamma,
    Gumbel,
    HalfNormal,
    Horseshoe,
    Laplace,
    Logistic,
    LogNormal,
    MultivariateNormalDiag,
    MultivariateNormalFullCovariance,
    MultivariateNormalTri,
    Normal,
    OneHotCategorical,
    RandomVariable,
    ScaleMixtureNormal,
    StudentT,
    Uniform,
    make_random_variable,
    seed,
)
from relbench.ppl.tracing import condition, set_value, tape, trace, traceable

__all__ = [
    "Bernoulli",
    "Beta",
    "Categorical",
    "Cauchy",
    "Dirichlet",
    "Exponential",
    "Gamma",
    "Gumbel",
    "HalfNormal",
    "Horseshoe",
    "Laplace",
    "LogNormal",
    "Logistic",
    "MultivariateNormalDiag",
    "MultivariateNormalFullCovariance",
    "MultivariateNormalTri",
    "Normal",
    "OneHotCategorical",
    "RandomVariable",
    "ScaleMixtureNormal",
    "StudentT",
    "Uniform",
    "condition",
    "kl_divergence",
    "make_log_joint_fn",
    "make_random_variable",
    "seed",
    "set_value",
    "tape",
    "trace",
    "traceable",
]

"""KL divergences between ppl distributions: analytic where registered, else Monte Carlo.

Every Bayesian layer's ELBO needs ``KL(q || p)`` of its variational posterior ``q`` to
its prior ``p``, summed over weights. This module is the one place that computes it:

* when distrax (or TFP-on-JAX, whose registry distrax consults) registers a closed form
  for the pair — e.g. Normal/Normal, Laplace/Laplace, Cauchy/Cauchy [2], Gamma/Gamma —
  the sum of the analytic divergences;
* otherwise the unbiased Monte Carlo estimate at samples ``w_s ~ q`` [1],

      KL(q || p) ~= 1/S sum_s [log q(w_s) - log p(w_s)],

  each term summed over the batch and event dimensions (one sample is what a
  reparameterized ELBO uses per step).

``p`` may be any distribution with ``log_prob`` (a distrax or TFP distribution, a ppl
random variable's ``distribution``, or an object of one's own), so any ppl distribution
can be a prior: Normal, Laplace, StudentT, Cauchy, Horseshoe, a scale mixture of
Normals.

References:
  [1] Blundell, Cornebise, Kavukcuoglu, Wierstra. Weight Uncertainty in Neural
      Networks. ICML 2015. https://arxiv.org/abs/1505.05424
  [2] Chyzak, Nielsen. A closed-form formula for the Kullback-Leibler divergence between
      Cauchy distributions. 2019. https://arxiv.org/abs/1905.10965
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.ppl.random_variable import RandomVariable


def _distribution(d: Any) -> Any:
    return d.distribution if isinstance(d, RandomVariable) else d


def softplus_inverse(x: Any) -> jax.Array:
    """The ``rho`` with ``softplus(rho) = x`` (for ``x > 0``): initializes scales."""
    x = jnp.asarray(x)
    return x + jnp.log(-jnp.expm1(-x))


def analytic_kl(q: Any, p: Any) -> jax.Array | None:
    """``sum KL(q || p)`` in closed form, or None where no closed form is registered."""
    q, p = _distribution(q), _distribution(p)
    method = getattr(q, "kl_divergence", None)
    if method is None:
        return None
    try:
        return jnp.sum(method(p))
    except (NotImplementedError, TypeError, ValueError):
        return None


def monte_carlo_kl(q: Any, p: Any, sample: Any) -> jax.Array:
    """``sum [log q(w) - log p(w)]`` at one sample ``w ~ q`` (unbiased for the KL)."""
    q, p = _distribution(q), _distribution(p)
    sample = sample.value if isinstance(sample, RandomVariable) else sample
    return jnp.sum(q.log_prob(sample)) - jnp.sum(p.log_prob(sample))


def kl_divergence(q: Any, p: Any, sample: Any = None) -> jax.Array:
    """``KL(q || p)`` summed over every dimension: analytic where registered, else the
    Monte Carlo estimate at ``sample`` (a draw from ``q``; a ppl random variable's
    value by default)."""
    exact = analytic_kl(q, p)
    if exact is not None:
        return exact
    if sample is None and isinstance(q, RandomVariable):
        sample = q.value
    if sample is None:
        raise UsageError(
            f"KL({type(_distribution(q)).__name__} || {type(_distribution(p)).__name__}) has "
            "no closed form; pass a sample from q for its Monte Carlo estimate"
        )
    return monte_carlo_kl(q, p, sample)


def kl_sum(collection: Any) -> jax.Array:
    """The total of every KL the layers sowed into a collection (0 if there are none)."""
    return sum((jnp.sum(leaf) for leaf in jax.tree.leaves(collection)), jnp.zeros(()))

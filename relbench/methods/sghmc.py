"""Cyclical stochastic-gradient Hamiltonian Monte Carlo (SGHMC) [1, 2].

Position and momentum follow blackjax's SGHMC solver (the Euler scheme of [1] with
friction ``alpha`` and no gradient-noise estimate, ``beta = 0``):

    theta <- theta + eta_t r,
    r <- (1 - alpha eta_t) r + eta_t grad log p~(theta) + sqrt(2 alpha tau eta_t) xi,

with ``log p~`` the per-example log posterior and ``tau`` the temperature per example,
as in ``relbench.methods.csgld``, and the cyclical cosine step size ``eta_t``. Without
noise this is SGD with momentum ``1 - alpha eta`` and learning rate ``eta^2``. The
momentum is the wrapper's state; the first ``exploration`` fraction of each cycle runs
without noise, and ``samples_per_cycle`` samples at the end of each cycle are members.

References:
  [1] Chen, Fox, Guestrin. Stochastic Gradient Hamiltonian Monte Carlo. ICML 2014.
      https://arxiv.org/abs/1402.4102
  [2] Zhang, Li, Zhang, Chen, Wilson. Cyclical Stochastic Gradient MCMC for Bayesian
      Deep Learning. ICLR 2020. https://arxiv.org/abs/1902.03932
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.method import Method
from relbench.methods.trajectory import check_schedule, sgmcmc_method


def make(
    likelihood: Likelihood = CATEGORICAL,
    step_size: float = 0.1,
    friction: float = 1.0,
    temperature: float = 1e-5,
    weight_decay: float = 1e-4,
    num_cycles: int = 2,
    samples_per_cycle: int = 3,
    exploration: float = 0.5,
    burn_in: float = 0.5,
    noise_seed: int = 0,
    label_smoothing: float = 0.0,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    step_size: eta_0, the step size at the start of each cycle.
    friction: alpha (momentum ``1 - alpha eta``).
    temperature: tau, per example (1 / N samples the Bayesian posterior).
    weight_decay: the Gaussian prior's precision per example.
    num_cycles, samples_per_cycle, exploration, burn_in: the cyclical schedule.
    noise_seed: the seed of the sampler noise's key.
    label_smoothing: mass moved from the label to the uniform distribution.
    """
    check_schedule("sghmc", num_cycles, samples_per_cycle, exploration, burn_in)
    if step_size <= 0 or not 0 < friction * step_size <= 1 or temperature < 0:
        raise UsageError(
            "sghmc needs step_size > 0, 0 < friction * step_size <= 1, temperature >= 0"
        )
    # imported here, not at the top: see csgld.make
    from blackjax.sgmcmc.diffusions import sghmc as sghmc_solver

    solver = sghmc_solver(alpha=friction)

    def move(key, params, momentum, drift, eta, tau):
        return solver(key, params, momentum, drift, eta, tau)

    schedule = (num_cycles, samples_per_cycle, exploration, burn_in)
    return sgmcmc_method(
        likelihood, label_smoothing, schedule, move, lambda p: jax.tree.map(jnp.zeros_like, p),
        step_size, temperature, weight_decay, noise_seed,
    )  # fmt: skip

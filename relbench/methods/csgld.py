"""Cyclical stochastic-gradient Langevin dynamics (cSGLD) [1, 2].

The weights follow the Euler discretization of the overdamped Langevin diffusion
(blackjax's ``overdamped_langevin`` solver),

    theta <- theta + eta_t grad log p~(theta) + sqrt(2 tau eta_t) xi,   xi ~ N(0, I),

with ``log p~ = -(mean loss + weight_decay / 2 ||theta||^2)`` the per-example log
posterior (the minibatch mean of the likelihood's NLL and a Gaussian prior) and the
cyclical cosine step size ``eta_t`` (``relbench.methods.trajectory``). Its stationary
distribution is ``p~^(1 / tau)``: ``tau = 1 / N`` (N training examples) is the Bayesian
posterior, a smaller ``tau`` a cold one [3]. The first ``exploration`` fraction of each
cycle runs without noise (``tau = 0``: gradient descent); in the rest
``samples_per_cycle`` samples are collected as members. The run's optimizer is not
used after the burn-in (the fraction ``burn_in`` of training before the first cycle):
the sampler is the update rule.

References:
  [1] Welling, Teh. Bayesian Learning via Stochastic Gradient Langevin Dynamics. ICML
      2011.
  [2] Zhang, Li, Zhang, Chen, Wilson. Cyclical Stochastic Gradient MCMC for Bayesian
      Deep Learning. ICLR 2020. https://arxiv.org/abs/1902.03932
  [3] Wenzel et al. How Good is the Bayes Posterior in Deep Neural Networks Really?
      ICML 2020. https://arxiv.org/abs/2002.02405
"""

from __future__ import annotations

from relbench.errors import UsageError
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.method import Method
from relbench.methods.trajectory import check_schedule, sgmcmc_method


def make(
    likelihood: Likelihood = CATEGORICAL,
    step_size: float = 0.5,
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
    temperature: tau, per example (1 / N samples the Bayesian posterior).
    weight_decay: the Gaussian prior's precision per example.
    num_cycles: C, the step-size cycles.
    samples_per_cycle: K, samples collected at the end of each cycle.
    exploration: the fraction of each cycle run without noise.
    burn_in: the fraction of training before the first cycle (at the full step size).
    noise_seed: the seed of the sampler noise's key.
    label_smoothing: mass moved from the label to the uniform distribution.
    """
    check_schedule("csgld", num_cycles, samples_per_cycle, exploration, burn_in)
    if step_size <= 0 or temperature < 0 or weight_decay < 0:
        raise UsageError("csgld needs step_size > 0, temperature >= 0 and weight_decay >= 0")
    # blackjax computes JAX arrays at import, which starts JAX's backend: import it only
    # when a run builds the method (after jax.distributed.initialize and XLA_FLAGS).
    from blackjax.sgmcmc.diffusions import overdamped_langevin

    solver = overdamped_langevin()

    def move(key, params, inner, drift, eta, tau):
        return solver(key, params, drift, eta, tau), inner

    schedule = (num_cycles, samples_per_cycle, exploration, burn_in)
    return sgmcmc_method(
        likelihood, label_smoothing, schedule, move, lambda params: (), step_size, temperature,
        weight_decay, noise_seed,
    )  # fmt: skip

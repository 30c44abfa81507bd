"""MultiSWAG [1]: SWAG over every member of a deep ensemble, composed from the two.

The deep ensemble (``relbench.methods.deep_ensemble``) trains M members as one
vectorized program, every variable with a leading member axis; SWAG's optimizer
wrapper (``relbench.methods.swag``) keeps its moments elementwise, so over the stacked
parameters it keeps each member's own moments. A draw samples every member from its
own SWAG posterior (independent noise per member), so the ``S`` samples of the
M-member model are ``S M`` members: a mixture of M Gaussians over the weights.

References:
  [1] Wilson, Izmailov. Bayesian Deep Learning and a Probabilistic Perspective of
      Generalization. NeurIPS 2020. https://arxiv.org/abs/2002.08791
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from relbench.methods import deep_ensemble, swag
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.method import Method


def member_sample(moments: swag.MomentsState, key: jax.Array, scale: float, members: int):
    """One SWAG draw per member: member ``m``'s slice of ``swag.sample`` with its own key
    (independent diagonal and low-rank noise per member). Leaves without the member
    axis (layers the deep ensemble shares, such as a recurrent cell) take the first
    member's draw."""
    draws = jax.vmap(lambda k: swag.sample(moments, k, scale))(jax.random.split(key, members))

    def pick(draw, mean):  # draw: [M, ...] samples of a leaf
        if mean.ndim and mean.shape[0] == members:
            return draw[jnp.arange(members), jnp.arange(members)]  # member m of sample m
        return draw[0]

    return jax.tree.map(pick, draws, moments.mean)


def make(
    likelihood: Likelihood = CATEGORICAL,
    ensemble_size: int = 4,
    start_fraction: float = 0.75,
    num_collected: int = 20,
    rank: int = 10,
    num_samples: int = 4,
    scale: float = 0.5,
    unroll_conv: bool = True,
    label_smoothing: float = 0.0,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    ensemble_size: M, the deep ensemble's members.
    start_fraction, num_collected, rank, scale: SWAG's, per member.
    num_samples: S, draws of the whole ensemble at test time (S M members).
    unroll_conv: the deep ensemble's (run the members' convolutions one by one).
    label_smoothing: mass moved from the label to the uniform distribution.
    """
    ensemble = deep_ensemble.make(likelihood, ensemble_size, unroll_conv, label_smoothing)
    sampler = functools.partial(member_sample, members=ensemble_size)
    return swag.swag_of(ensemble, start_fraction, num_collected, rank, num_samples, sampler, scale)

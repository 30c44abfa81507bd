"""Dropout, and Monte Carlo dropout that keeps sampling at test time.

Inverted dropout keeps each unit with probability ``1 - rate`` and scales the kept
units by ``1 / (1 - rate)``, so the expected activation is unchanged. MC dropout [1]
keeps the masks random at test time; averaging the softmax over M such passes
approximates the predictive distribution of a Bayesian network with a Bernoulli
variational posterior.

References:
  [1] Gal, Ghahramani. Dropout as a Bayesian Approximation: Representing Model
      Uncertainty in Deep Learning. ICML 2016. https://arxiv.org/abs/1506.02142
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def dropout(inputs: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout of ``inputs`` with drop probability ``rate`` (pure function)."""
    if rate == 0.0:
        return inputs
    keep = jax.random.bernoulli(key, 1.0 - rate, inputs.shape)
    return jnp.where(keep, inputs / (1.0 - rate), jnp.zeros_like(inputs))


class MCDropout(nn.Module):
    """Dropout that samples in training *and* evaluation (draws from ``"dropout"``).

    It has the signature of ``flax.linen.Dropout`` so that models take either as their
    ``dropout`` field; ``deterministic`` is accepted and deliberately ignored.
    """

    rate: float

    @nn.compact
    def __call__(self, inputs: jax.Array, deterministic: bool = False) -> jax.Array:
        del deterministic  # MC dropout samples at test time too: that is the method.
        if self.rate == 0.0:
            return inputs
        return dropout(inputs, self.rate, self.make_rng("dropout"))

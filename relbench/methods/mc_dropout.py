"""Monte Carlo dropout [1]: dropout stays on at test time; samples are members.

At evaluation the model runs ``num_samples`` times with independent dropout masks, and
the ``[S, 1, B, K]`` logits are stacked on the member axis as ``[S, B, K]`` (for a
Gaussian likelihood, the samples form an equal-weight mixture).

References:
  [1] Gal, Ghahramani. Dropout as a Bayesian Approximation. ICML 2016.
      https://arxiv.org/abs/1506.02142
"""

from __future__ import annotations

import dataclasses

from relbench.errors import UsageError
from relbench.layers.dropout import MCDropout
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.method import Method, dense_head, likelihood_loss, sampled_predict


def make(
    likelihood: Likelihood = CATEGORICAL, dropout_rate: float = 0.1, num_samples: int = 8
) -> Method:
    """Args: likelihood: the dataset's likelihood (given by the loop); dropout_rate: drop
    probability of every dropout layer; num_samples: M, the samples at test time."""
    if not 0.0 < dropout_rate < 1.0:
        raise UsageError(f"mc_dropout needs 0 < dropout_rate < 1, got {dropout_rate}")
    if num_samples < 1:
        raise UsageError(f"mc_dropout needs num_samples >= 1, got {num_samples}")

    def layers(base):
        head = dense_head(likelihood, base.dense)
        return dataclasses.replace(base, dropout=MCDropout, dropout_rate=dropout_rate, head=head)

    return Method(
        layers=layers,
        loss_fn=likelihood_loss(likelihood, ("batch_stats",)),
        predict_fn=sampled_predict(num_samples, ("dropout",)),
    )

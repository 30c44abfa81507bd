"""The deterministic baseline: one network, maximum likelihood, one pass at test time."""

from __future__ import annotations

import dataclasses

from relbench.errors import UsageError
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.method import Method, dense_head, likelihood_loss, single_pass_predict


def make(
    likelihood: Likelihood = CATEGORICAL,
    label_smoothing: float = 0.0,
    dropout_rate: float = 0.0,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    label_smoothing: mass moved from the label to the uniform distribution.
    dropout_rate: dropout in training (off at test time); 0 for none.
    """
    if not 0.0 <= dropout_rate < 1.0:
        raise UsageError(f"deterministic needs 0 <= dropout_rate < 1, got {dropout_rate}")
    likelihood = likelihood.smoothed(label_smoothing)

    def layers(base):
        head = dense_head(likelihood, base.dense)
        return dataclasses.replace(base, dropout_rate=dropout_rate, head=head)

    return Method(
        layers=layers,
        loss_fn=likelihood_loss(likelihood, ("batch_stats",)),
        predict_fn=single_pass_predict,
    )

"""Monte Carlo dropout [1]: dropout stays on at test time; samples are members.

At evaluation the model runs ``num_samples`` times with independent dropout masks, and
the ``[S, 1, B, K]`` logits are stacked on the member axis as ``[S, B, K]``.

References:
  [1] Gal, Ghahramani. Dropout as a Bayesian Approximation. ICML 2016.
      https://arxiv.org/abs/1506.02142
"""

from __future__ import annotations

from relbench.layers.dropout import MCDropout
from relbench.methods.method import Method, likelihood_parts, sampled_predict


def make(
    dropout_rate: float = 0.1, num_samples: int = 8, likelihood: str = "categorical"
) -> Method:
    """Args: dropout_rate: drop probability of every dropout layer; num_samples: M;
    likelihood: ``"categorical"`` (classification) or ``"gaussian"`` (regression; the
    samples form an equal-weight Gaussian mixture)."""
    if not 0.0 < dropout_rate < 1.0:
        raise ValueError(f"mc_dropout needs 0 < dropout_rate < 1, got {dropout_rate}")
    model_kwargs, loss_fn = likelihood_parts(likelihood, ("batch_stats",))
    return Method(
        model_kwargs={"dropout": MCDropout, "dropout_rate": dropout_rate, **model_kwargs},
        loss_fn=loss_fn,
        predict_fn=sampled_predict(num_samples, ("dropout",)),
        rng_streams=("dropout",),
    )

"""The deterministic baseline: one network, maximum likelihood, one pass at test time."""

from __future__ import annotations

from relbench.methods.method import Method, likelihood_parts, single_pass_predict


def make(label_smoothing: float = 0.0, likelihood: str = "categorical") -> Method:
    """Args: label_smoothing: mass moved from the label to the uniform distribution;
    likelihood: ``"categorical"`` (classification) or ``"gaussian"`` (regression)."""
    model_kwargs, loss_fn = likelihood_parts(likelihood, ("batch_stats",), label_smoothing)
    return Method(
        model_kwargs=model_kwargs,
        loss_fn=loss_fn,
        predict_fn=single_pass_predict,
        rng_streams=("dropout",),
    )

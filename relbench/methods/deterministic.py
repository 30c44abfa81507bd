"""The deterministic baseline: one network, maximum likelihood, one pass at test time."""

from __future__ import annotations

from relbench.methods.method import Method, cross_entropy_loss, single_pass_predict


def make(label_smoothing: float = 0.0) -> Method:
    """Args: label_smoothing: mass moved from the label to the uniform distribution."""
    return Method(
        model_kwargs={},
        loss_fn=cross_entropy_loss(("batch_stats",), label_smoothing),
        predict_fn=single_pass_predict,
        rng_streams=("dropout",),
    )

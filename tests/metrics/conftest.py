"""Random predictions shared by the metric tests."""

import jax
import numpy as np
import pytest

from relbench.metrics import Predictions, predictive_log_probs


def make_predictions(seed: int, members: int, n: int, k: int, *, ties: bool = False):
    """Member logits (rounded to create ties), labels, and a mask with a few zeros."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(members, n, k)).astype(np.float32) * 2.0
    if ties:
        logits = np.round(logits)  # many equal confidences and scores
    labels = rng.integers(0, k, n).astype(np.int32)
    mask = (rng.uniform(size=n) > 0.2).astype(np.float32)
    log_probs = np.asarray(predictive_log_probs(logits), np.float64)
    return logits, log_probs, labels, mask


def predictions(logits, labels, mask, extras=None) -> Predictions:
    return Predictions(
        logits=jax.numpy.asarray(logits),
        log_probs=predictive_log_probs(jax.numpy.asarray(logits)),
        labels=jax.numpy.asarray(labels),
        mask=jax.numpy.asarray(mask),
        extras=extras or {},
    )


@pytest.fixture(params=[False, True], ids=["continuous", "ties"])
def ties(request):
    return request.param

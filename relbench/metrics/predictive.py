"""From member logits to the predictive distribution: the one place this happens.

Every model returns logits shaped ``[M, B, K]`` (M members or samples). The predictive
distribution is the mean of the member softmaxes,

    p(y | x) = 1/M * sum_m softmax(logits_m)(y),

computed in log space (``logsumexp`` over members) so that NLL stays finite and exact
for confident predictions. Every metric sees this distribution and nothing else.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def predictive_log_probs(logits: jax.Array) -> jax.Array:
    """``[M, B, K]`` member logits -> ``[B, K]`` log of the mean member softmax."""
    members = logits.shape[0]
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(members)


def predictive_probs(logits: jax.Array) -> jax.Array:
    """``[M, B, K]`` member logits -> ``[B, K]`` mean member softmax."""
    return jnp.exp(predictive_log_probs(logits))

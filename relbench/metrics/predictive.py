"""From member logits to the predictive distribution: the one place this happens.

Every model returns logits shaped ``[M, B, K]`` (M members or samples). The predictive
distribution is the mean of the member softmaxes,

    p(y | x) = 1/M * sum_m softmax(logits_m)(y),

computed in log space (``logsumexp`` over members) so that NLL stays finite and exact
for confident predictions. Every metric sees this distribution and nothing else.

For multi-label data (K independent labels, the Bernoulli likelihood) the predictive
distribution of label k is the mean of the member sigmoids,

    p_k(x) = 1/M * sum_m sigmoid(logits_mk),

returned with ``1 - p_k`` in log space (``multilabel_log_probs``), so that the binary
NLL stays finite and exact for confident labels either way.
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


def multilabel_log_probs(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``[M, B, K]`` member logits -> ``[B, K]`` ``log p_k`` and ``log(1 - p_k)``, with
    ``p_k`` the mean member sigmoid."""
    log_members = jnp.log(logits.shape[0])
    log_p = jax.nn.logsumexp(jax.nn.log_sigmoid(logits), axis=0) - log_members
    log_not_p = jax.nn.logsumexp(jax.nn.log_sigmoid(-logits), axis=0) - log_members
    return log_p, log_not_p


def multilabel_probs(logits: jax.Array) -> jax.Array:
    """``[M, B, K]`` member logits -> ``[B, K]`` mean member sigmoid ``p_k``."""
    return jnp.exp(multilabel_log_probs(logits)[0])


def task_log_probs(task: str, logits: jax.Array) -> jax.Array:
    """``Predictions.log_probs`` of a dataset's task: ``log p_k`` of every label for
    multi-label data, else the log mean member softmax."""
    if task == "multilabel":
        return multilabel_log_probs(logits)[0]
    return predictive_log_probs(logits)

"""Ensemble diversity: how much do the M members (or samples) differ?

With member distributions ``p_m = softmax(z_m)`` for ``m = 1..M``, the predictive
``p = 1/M sum_m p_m``, member predictions ``a_m = argmax_k p_mk``, and every quantity
averaged over the (unmasked) examples:

* ``predictive_entropy`` = H[p] (total uncertainty);
* ``expected_member_entropy`` = 1/M sum_m H[p_m] (aleatoric part) [1];
* ``mutual_information`` = H[p] - 1/M sum_m H[p_m] (epistemic part, >= 0) [1];
* ``disagreement`` = 1/(M(M-1)) sum_{m != n} 1[a_m != a_n], the fraction of member
  pairs whose top-1 predictions differ [2, 3]; computed as
  ``(M^2 - sum_k c_k^2) / (M(M-1))`` with ``c_k`` the members voting ``k``;
* ``pairwise_kl`` = 1/(M(M-1)) sum_{m != n} KL(p_m || p_n), averaged over ordered pairs
  (so it is symmetric) [2]; computed in O(MK) as
  ``(M sum_m sum_k p_mk log p_mk - sum_k (sum_m p_mk)(sum_n log p_nk)) / (M(M-1))``.

For a single member (M = 1) there are no pairs: disagreement, pairwise KL and mutual
information would be 0 for every input, so they are not reported (an uninformative
constant is not a result); both entropies equal the model's entropy.

References:
  [1] Depeweg, Hernandez-Lobato, Doshi-Velez, Udluft. Decomposition of Uncertainty in
      Bayesian Deep Learning for Efficient and Risk-sensitive Learning. ICML 2018.
      https://arxiv.org/abs/1710.07283
  [2] Fort, Hu, Lakshminarayanan. Deep Ensembles: A Loss Landscape Perspective. 2019.
      https://arxiv.org/abs/1912.02757
  [3] Wen, Tran, Ba. BatchEnsemble: An Alternative Approach to Efficient Ensemble and
      Lifelong Learning. ICLR 2020. https://arxiv.org/abs/2002.06715
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from relbench.metrics.predictive import predictive_log_probs
from relbench.metrics.scores import entropy
from relbench.metrics.streaming import Predictions, StreamingMetric, evaluate_arrays

NAMES = (
    "predictive_entropy",
    "expected_member_entropy",
    "mutual_information",
    "disagreement",
    "pairwise_kl",
)


#: Terms that are 0 for every input of a single member: omitted for M = 1.
BETWEEN_MEMBERS = ("mutual_information", "disagreement", "pairwise_kl")


def informative(values: dict, members: int) -> dict:
    """``values`` without the between-member terms where there is one member."""
    return values if members > 1 else {k: v for k, v in values.items() if k not in BETWEEN_MEMBERS}


def per_example_diversity(logits: jax.Array, log_probs: jax.Array) -> dict[str, jax.Array]:
    """``[M, B, K]`` logits and ``[B, K]`` predictive log probs -> ``{name: [B]}``."""
    members, _, num_classes = logits.shape
    member_log_probs = jax.nn.log_softmax(logits, axis=-1)  # [M, B, K]
    member_probs = jnp.exp(member_log_probs)
    member_entropy = jnp.mean(entropy(member_log_probs), axis=0)
    predictive_entropy = entropy(log_probs)
    pairs = max(members * (members - 1), 1)  # no pairs for M = 1: the sums below are 0
    votes = jnp.sum(jax.nn.one_hot(jnp.argmax(logits, -1), num_classes), axis=0)  # [B, K]
    disagreement = (members**2 - jnp.sum(votes**2, axis=-1)) / pairs
    self_term = members * jnp.sum(member_probs * member_log_probs, axis=(0, 2))
    cross_term = jnp.sum(jnp.sum(member_probs, 0) * jnp.sum(member_log_probs, 0), axis=-1)
    values = {
        "predictive_entropy": predictive_entropy,
        "expected_member_entropy": member_entropy,
        "mutual_information": jnp.maximum(predictive_entropy - member_entropy, 0.0),
        "disagreement": disagreement,
        "pairwise_kl": jnp.maximum(self_term - cross_term, 0.0) / pairs,
    }
    return informative(values, members)


def _statistics(p: Predictions):
    values = per_example_diversity(p.logits, p.log_probs)
    return {"count": jnp.sum(p.mask), **{k: jnp.sum(p.mask * v) for k, v in values.items()}}


def _result(s) -> dict[str, float]:
    return {name: s[name] / s["count"] for name in NAMES if name in s}


ENSEMBLE_DIVERSITY = StreamingMetric(_statistics, _result)


def ensemble_diversity(logits, mask=None) -> dict[str, float]:
    """Every diversity metric of ``[M, N, K]`` member logits (whole arrays)."""
    logits = jnp.asarray(logits, jnp.float32)
    n = logits.shape[1]
    predictions = Predictions(
        logits=logits,
        log_probs=predictive_log_probs(logits),
        labels=jnp.zeros(n, jnp.int32),
        mask=jnp.ones(n) if mask is None else jnp.asarray(np.asarray(mask), jnp.float32),
    )
    return evaluate_arrays((ENSEMBLE_DIVERSITY,), predictions)

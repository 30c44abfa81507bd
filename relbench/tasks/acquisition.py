"""Acquisition functions of pool-based active learning: which examples to label next.

Each is a pure function ``acquire(pool, batch_size, key) -> [batch_size]`` positions in
the pool, of the model's outputs on the unlabelled pool ``pool`` (``PoolOutputs``:
member logits ``[M, P, K]``, penultimate features ``[M, P, D]``). With member
distributions ``p_m = softmax(z_m)`` and the predictive ``p = 1/M sum_m p_m``:

* ``random``: a uniformly random batch (the baseline);
* ``entropy``: the largest predictive entropy ``H[p]`` [1];
* ``margin``: the smallest gap between the two most probable classes ``p_(1) - p_(2)`` [1];
* ``least_confidence``: the smallest ``max_k p_k`` [1];
* ``bald``: the largest mutual information between the label and the parameters,
  ``H[p] - 1/M sum_m H[p_m]`` (BALD) [2, 3]; top-``b`` scores, each chosen alone;
* ``batchbald``: greedily the batch with the largest joint mutual information
  ``I(y_1..y_b; w) = H(y_1..y_b) - sum_i 1/M sum_m H[p_m,i]`` [4]. The joint entropy of
  the chosen labels with a candidate's is estimated from ``BATCHBALD_SAMPLES`` label
  configurations ``s`` of the chosen examples drawn from the predictive (a member
  ``m`` uniformly, then ``y_j ~ p_m,j``): with ``P_m(s) = prod_j p_m,j(y_j^s)``,
  ``H ~= -1/S sum_s sum_k P(s, k) / P(s) log P(s, k)``, ``P(s, k) = 1/M sum_m P_m(s)
  p_m,i(k)`` and ``P(s) = 1/M sum_m P_m(s)`` (exact for the first pick, where it is BALD);
* ``badge``: k-means++ seeding [6] on the gradient embeddings ``g_i = (p_i - e_{y^_i}) x
  h_i`` (``y^_i = argmax p_i``, ``h_i`` the member-mean features): the last layer's loss
  gradient under the predicted label, so the batch is both uncertain (large ``||g||``)
  and diverse [5]. The first centre is the largest ``||g||``, each next one drawn with
  probability proportional to its squared distance to the nearest centre; distances use
  ``<a x h, b x h'> = <a, b><h, h'>``, so no ``[P, K x D]`` array is formed.

Score-based functions break ties by pool position (``jax.lax.top_k``). ``bald`` and
``batchbald`` need several members or samples (``needs_members``): on a single-member
method the mutual information is 0 for every example.

References:
  [1] Settles. Active Learning Literature Survey. 2009.
      https://burrsettles.com/pub/settles.activelearning.pdf
  [2] Houlsby, Huszar, Ghahramani, Lengyel. Bayesian Active Learning for Classification
      and Preference Learning. 2011. https://arxiv.org/abs/1112.5745
  [3] Gal, Islam, Ghahramani. Deep Bayesian Active Learning with Image Data. ICML 2017.
      https://arxiv.org/abs/1703.02910
  [4] Kirsch, van Amersfoort, Gal. BatchBALD: Efficient and Diverse Batch Acquisition
      for Deep Bayesian Active Learning. NeurIPS 2019. https://arxiv.org/abs/1906.08158
  [5] Ash, Zhang, Krishnamurthy, Langford, Agarwal. Deep Batch Active Learning by
      Diverse, Uncertain Gradient Lower Bounds (BADGE). ICLR 2020.
      https://arxiv.org/abs/1906.03671
  [6] Arthur, Vassilvitskii. k-means++: The Advantages of Careful Seeding. SODA 2007.
      https://dl.acm.org/doi/10.5555/1283383.1283494
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from relbench.metrics.predictive import predictive_log_probs
from relbench.metrics.scores import entropy, mutual_information
from relbench.registry import Registry

BATCHBALD_SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class PoolOutputs:
    """The model's outputs on the pool: logits ``[M, P, K]``, features ``[M, P, D]``."""

    logits: jax.Array
    features: jax.Array | None = None


jax.tree_util.register_dataclass(PoolOutputs, data_fields=["logits", "features"], meta_fields=[])


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """An acquisition function and what it needs of the model."""

    acquire: Callable[[PoolOutputs, int, jax.Array], jax.Array]
    needs_members: bool = False
    needs_features: bool = False


def _top(scores: jax.Array, batch_size: int) -> jax.Array:
    return jax.lax.top_k(scores, batch_size)[1]


def _scored(score: Callable[[jax.Array, jax.Array], jax.Array]):
    """An acquisition taking the ``batch_size`` largest ``score(logits, log_probs)``."""

    def acquire(pool: PoolOutputs, batch_size: int, key: jax.Array) -> jax.Array:
        del key  # deterministic
        return _top(score(pool.logits, predictive_log_probs(pool.logits)), batch_size)

    return acquire


def _random(pool: PoolOutputs, batch_size: int, key: jax.Array) -> jax.Array:
    return jax.random.permutation(key, pool.logits.shape[1])[:batch_size]


def _margin(logits, log_probs):
    top2 = jax.lax.top_k(jnp.exp(log_probs), 2)[0]  # [P, 2]
    return -(top2[:, 0] - top2[:, 1])


def _least_confidence(logits, log_probs):
    return -jnp.max(log_probs, axis=-1)


@functools.partial(jax.jit, static_argnums=1)
def batchbald(pool: PoolOutputs, batch_size: int, key: jax.Array) -> jax.Array:
    """The greedy BatchBALD batch of the module docstring."""
    probs = jax.nn.softmax(pool.logits.astype(jnp.float32), axis=-1)  # [M, P, K]
    members = probs.shape[0]
    member_entropy = jnp.mean(entropy(jnp.log(probs)), axis=0)  # [P]

    def pick(n, carry):
        chosen, joint = carry  # [b] (-1: not yet), P_m(s) [M, S]
        with_candidate = jnp.einsum("ms,mik->sik", joint, probs) / members  # P(s, k) [S, P, K]
        marginal = jnp.mean(joint, axis=0)  # P(s) [S]
        terms = with_candidate * jnp.log(jnp.maximum(with_candidate, 1e-30))
        joint_entropy = -jnp.mean(jnp.sum(terms, -1) / marginal[:, None], axis=0)  # [P]
        taken = jnp.any(jnp.arange(probs.shape[1])[:, None] == chosen[None, :], axis=1)
        chosen = chosen.at[n].set(
            jnp.argmax(jnp.where(taken, -jnp.inf, joint_entropy - member_entropy))
        )
        # Fresh configurations of the chosen labels, drawn from the predictive.
        member_key, label_key = jax.random.split(jax.random.fold_in(key, n))
        member = jax.random.randint(member_key, (BATCHBALD_SAMPLES,), 0, members)
        picked = probs[:, jnp.maximum(chosen, 0)]  # [M, b, K]
        labels = jax.random.categorical(label_key, jnp.log(picked[member]))  # [S, b]
        factors = jnp.einsum("mjk,sjk->msj", picked, jax.nn.one_hot(labels, probs.shape[-1]))
        factors = jnp.where(jnp.arange(batch_size) <= n, factors, 1.0)  # only the chosen
        return chosen, jnp.prod(factors, axis=-1)  # P_m(s) [M, S]

    start = (jnp.full(batch_size, -1, jnp.int32), jnp.ones((members, BATCHBALD_SAMPLES)))
    return jax.lax.fori_loop(0, batch_size, pick, start)[0]


@functools.partial(jax.jit, static_argnums=1)
def badge(pool: PoolOutputs, batch_size: int, key: jax.Array) -> jax.Array:
    """k-means++ seeding on the gradient embeddings (module docstring)."""
    probs = jnp.exp(predictive_log_probs(pool.logits))  # [P, K]
    residual = probs - jax.nn.one_hot(jnp.argmax(probs, -1), probs.shape[-1])  # [P, K]
    features = jnp.mean(pool.features, axis=0).reshape(probs.shape[0], -1)  # [P, D]
    norms = jnp.sum(residual**2, -1) * jnp.sum(features**2, -1)  # ||g_i||^2 [P]

    def sq_distance(centre):  # ||g_i - g_c||^2 for every i
        dot = (residual @ residual[centre]) * (features @ features[centre])
        return jnp.maximum(norms - 2 * dot + norms[centre], 0.0)

    def pick(n, carry):
        chosen, nearest = carry
        taken = jnp.any(jnp.arange(len(norms))[:, None] == chosen[None, :], axis=1)
        weights = jnp.where(taken, 0.0, nearest)
        # D^2 sampling; where every distance is 0 (all points are centres), uniform.
        weights = jnp.where(jnp.any(weights > 0), weights, jnp.where(taken, 0.0, 1.0))
        logits = jnp.where(weights > 0, jnp.log(jnp.maximum(weights, 1e-30)), -jnp.inf)
        centre = jax.random.categorical(jax.random.fold_in(key, n), logits)
        return chosen.at[n].set(centre), jnp.minimum(nearest, sq_distance(centre))

    first = jnp.argmax(norms)
    chosen = jnp.full(batch_size, -1, jnp.int32).at[0].set(first)
    return jax.lax.fori_loop(1, batch_size, pick, (chosen, sq_distance(first)))[0]


ACQUISITIONS = Registry(
    "acquisition function",
    {
        "random": Acquisition(_random),
        "entropy": Acquisition(_scored(lambda logits, log_probs: entropy(log_probs))),
        "margin": Acquisition(_scored(_margin)),
        "least_confidence": Acquisition(_scored(_least_confidence)),
        "bald": Acquisition(_scored(mutual_information), needs_members=True),
        "batchbald": Acquisition(batchbald, needs_members=True),
        "badge": Acquisition(badge, needs_features=True),
    },
    section="active_learning.acquisition",
)

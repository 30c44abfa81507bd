"""Acquisition functions against numpy references and the properties that define them."""

import itertools

import jax
import numpy as np
import pytest

from relbench.tasks.acquisition import ACQUISITIONS, PoolOutputs, batchbald

M, P, K = 6, 40, 3


def _pool(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(M, P, K)).astype(np.float32) * 2
    features = rng.normal(size=(M, P, 5)).astype(np.float32)
    return PoolOutputs(logits=jax.numpy.asarray(logits), features=jax.numpy.asarray(features))


def _probs(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _entropy(p):
    return -np.sum(p * np.log(p), -1)


def _scores(logits):
    members = _probs(np.asarray(logits, np.float64))
    p = members.mean(0)
    top = np.sort(p, -1)
    return {
        "entropy": _entropy(p),
        "margin": -(top[:, -1] - top[:, -2]),
        "least_confidence": -np.log(top[:, -1]),
        "bald": _entropy(p) - _entropy(members).mean(0),
    }


def test_scored_acquisitions_take_the_top_numpy_scores():
    pool = _pool()
    for name, scores in _scores(pool.logits).items():
        picked = np.asarray(ACQUISITIONS.get(name).acquire(pool, 5, jax.random.key(0)))
        np.testing.assert_array_equal(picked, np.argsort(-scores, kind="stable")[:5], name)


@pytest.mark.parametrize("name", ["random", "badge"])
def test_batches_are_distinct_and_a_function_of_the_key(name):
    pool, acquire = _pool(), ACQUISITIONS.get(name).acquire
    first = np.asarray(acquire(pool, 8, jax.random.key(1)))
    assert len(set(first.tolist())) == 8 and first.min() >= 0 and first.max() < P
    np.testing.assert_array_equal(first, np.asarray(acquire(pool, 8, jax.random.key(1))))
    assert not np.array_equal(first, np.asarray(acquire(pool, 8, jax.random.key(2))))


def _joint_mutual_information(members, batch):
    """I(y_batch; w) by enumerating every label configuration (exact)."""
    joint = 0.0
    for labels in itertools.product(range(K), repeat=len(batch)):
        per_member = np.prod([members[:, i, y] for i, y in zip(batch, labels, strict=True)], axis=0)
        p = per_member.mean()
        joint -= p * np.log(p)
    return joint - sum(_entropy(members[:, i]).mean() for i in batch)


def test_batchbald_first_pick_is_bald_and_it_avoids_duplicates_bald_takes():
    pool = _pool(2)
    bald = np.asarray(ACQUISITIONS.get("bald").acquire(pool, 3, jax.random.key(0)))
    # A pool whose most informative example appears three times: BALD takes the three
    # copies (the same score), BatchBALD one copy (a copy adds no information).
    best = bald[0]
    logits = np.concatenate(
        [np.asarray(pool.logits), np.repeat(pool.logits[:, best : best + 1], 2, 1)], 1
    )
    copies = {int(best), P, P + 1}
    repeated = PoolOutputs(logits=jax.numpy.asarray(logits))
    assert set(np.asarray(ACQUISITIONS.get("bald").acquire(repeated, 3, None)).tolist()) == copies
    chosen = np.asarray(batchbald(repeated, 3, jax.random.key(0)))
    assert chosen[0] == best and len(copies & set(chosen.tolist())) == 1
    assert len(set(chosen.tolist())) == 3
    assert len(set(chosen.tolist())) == 3
    # Its estimate picks a batch whose exact joint information beats BALD's top 3.
    members = _probs(logits.astype(np.float64))
    assert _joint_mutual_information(members, chosen) > _joint_mutual_information(
        members, sorted(copies)
    )


def test_badge_starts_from_the_largest_gradient_embedding():
    pool = _pool(3)
    p = _probs(np.asarray(pool.logits, np.float64)).mean(0)
    residual = p - np.eye(K)[p.argmax(-1)]
    h = np.asarray(pool.features, np.float64).mean(0)
    norms = (residual**2).sum(-1) * (h**2).sum(-1)  # ||(p - e) x h||^2
    picked = np.asarray(ACQUISITIONS.get("badge").acquire(pool, 4, jax.random.key(0)))
    assert picked[0] == np.argmax(norms)

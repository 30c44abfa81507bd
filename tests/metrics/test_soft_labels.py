"""Soft-label metrics against naive numpy loops and their hard-label counterparts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import metrics as metrics_lib

B, K = 40, 4


def _predictions(seed, soft=True, one_hot=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, B, K)).astype(np.float32) * 2
    labels = rng.integers(0, K, B).astype(np.int32)
    q = rng.dirichlet(np.ones(K) * 0.7, size=B).astype(np.float32)
    if one_hot:
        q = np.eye(K, dtype=np.float32)[labels]
    return logits, labels, (q if soft else None)


def _evaluate(logits, labels, q):
    suite = metrics_lib.eval_suite("classification", is_ood=False)

    def step(logits, labels, q):
        p = metrics_lib.Predictions(
            logits=logits,
            log_probs=metrics_lib.predictive_log_probs(logits),
            labels=labels,
            mask=jnp.ones(labels.shape[0]),
            soft_labels=q,
        )
        return metrics_lib.batch_statistics(suite, p)

    totals = metrics_lib.add_statistics(
        suite, None, jax.device_get(jax.jit(step)(logits, labels, q))
    )
    return metrics_lib.results(suite, totals)


def test_soft_scores_match_naive_loops():
    logits, labels, q = _predictions(0)
    result = _evaluate(logits, labels, q)
    p = np.asarray(metrics_lib.predictive_probs(logits), np.float64)
    nll = kl = brier = 0.0
    bins = np.zeros((15, 3))  # count, confidence, expected correct
    for i in range(B):
        for k in range(K):
            nll -= q[i, k] * np.log(p[i, k])
            kl += q[i, k] * np.log(q[i, k] / p[i, k]) if q[i, k] > 0 else 0.0
            brier += (p[i, k] - q[i, k]) ** 2
        confidence = p[i].max()
        b = min(int(np.ceil(confidence * 15)) - 1, 14)
        bins[b] += [1, confidence, q[i, p[i].argmax()]]
    assert result["soft_nll"] == pytest.approx(nll / B, rel=1e-5)
    assert result["soft_kl"] == pytest.approx(kl / B, rel=1e-4)
    assert result["soft_brier"] == pytest.approx(brier / B, rel=1e-5)
    assert result["soft_ece"] == pytest.approx(np.sum(np.abs(bins[:, 2] - bins[:, 1])) / B, 1e-5)


def test_one_hot_soft_labels_reduce_to_the_hard_metrics():
    result = _evaluate(*_predictions(1, one_hot=True))
    assert result["soft_nll"] == pytest.approx(result["nll"], rel=1e-6)
    assert result["soft_kl"] == pytest.approx(result["nll"], rel=1e-6)  # H(one-hot) = 0
    assert result["soft_brier"] == pytest.approx(result["brier"], rel=1e-6)
    assert result["soft_ece"] == pytest.approx(result["ece"], rel=1e-6)


def test_without_soft_labels_nothing_is_reported():
    result = _evaluate(*_predictions(2, soft=False))
    assert {"nll", "brier", "ece"} <= set(result)
    assert not any(name.startswith("soft_") for name in result)

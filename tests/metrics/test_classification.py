"""Core metrics against independent references, streamed in uneven, masked batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from sklearn.metrics import accuracy_score, log_loss

from relbench import metrics
from relbench.train.sharding import data_mesh


def random_predictions(rng, members, n, k):
    logits = rng.normal(size=(members, n, k)).astype(np.float32) * 3
    labels = rng.integers(0, k, size=n).astype(np.int32)
    return logits, labels


def numpy_probs(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).mean(0)


def numpy_ece(probs, labels, bins=15):
    confidence, predicted = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            gap = abs((predicted[in_bin] == labels[in_bin]).mean() - confidence[in_bin].mean())
            total += in_bin.mean() * gap
    return total


def streamed(logits, labels, mask, batch_sizes, sharded=False):
    mesh = data_mesh()
    totals = None
    start = 0
    statistics = jax.jit(
        lambda lg, lb, m: metrics.batch_statistics(
            metrics.IN_DISTRIBUTION,
            metrics.Predictions(lg, metrics.predictive_log_probs(lg), lb, m),
        )
    )
    for size in batch_sizes:
        part = slice(start, start + size)
        args = (jnp.asarray(logits[:, part]), jnp.asarray(labels[part]), jnp.asarray(mask[part]))
        if sharded:
            shard = lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))  # noqa: E731
            args = (
                shard(args[0], PartitionSpec(None, "data")),
                shard(args[1], PartitionSpec("data")),
                shard(args[2], PartitionSpec("data")),
            )
        totals = metrics.add_statistics(totals, jax.device_get(statistics(*args)))
        start += size
    return metrics.results(metrics.IN_DISTRIBUTION, totals)


@pytest.mark.parametrize("members", [1, 5])
def test_whole_array_matches_sklearn_and_numpy(members):
    rng = np.random.default_rng(0)
    logits, labels = random_predictions(rng, members, 500, 7)
    got = streamed(logits, labels, np.ones(500, np.float32), [500])
    probs = numpy_probs(logits.astype(np.float64))
    np.testing.assert_allclose(got["accuracy"], accuracy_score(labels, probs.argmax(1)))
    np.testing.assert_allclose(got["nll"], log_loss(labels, probs, labels=range(7)), rtol=1e-5)
    brier = np.mean(np.sum((probs - np.eye(7)[labels]) ** 2, axis=1))
    np.testing.assert_allclose(got["brier"], brier, rtol=1e-5)
    np.testing.assert_allclose(got["ece"], numpy_ece(probs, labels), rtol=1e-4, atol=1e-6)


def test_uneven_masked_batches_equal_the_unmasked_subset():
    rng = np.random.default_rng(1)
    logits, labels = random_predictions(rng, 3, 300, 4)
    mask = (rng.uniform(size=300) > 0.3).astype(np.float32)
    got = streamed(logits, labels, mask, [13, 100, 187])
    keep = mask.astype(bool)
    expected = streamed(logits[:, keep], labels[keep], np.ones(keep.sum(), np.float32), [keep.sum()])
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-7)
    probs = numpy_probs(logits[:, keep].astype(np.float64))
    np.testing.assert_allclose(got["ece"], numpy_ece(probs, labels[keep]), rtol=1e-4, atol=1e-6)


def test_sharded_over_four_devices_equals_single_array():
    assert jax.device_count() == 4
    rng = np.random.default_rng(2)
    logits, labels = random_predictions(rng, 2, 256, 10)
    mask = np.ones(256, np.float32)
    mask[-5:] = 0.0  # padding at the end of the last batch
    whole = streamed(logits, labels, mask, [256])
    sharded = streamed(logits, labels, mask, [64, 128, 64], sharded=True)
    for name in whole:
        np.testing.assert_allclose(sharded[name], whole[name], rtol=1e-5, atol=1e-7)


def test_single_class_present_and_confident_predictions_stay_finite():
    labels = np.zeros(50, np.int32)
    logits = np.zeros((1, 50, 3), np.float32)
    logits[0, :, 0] = 200.0  # softmax saturates: p_y = 1 exactly in float32
    logits[0, :5, 1] = 400.0  # five confidently wrong: log p_y = -200, not -inf
    got = streamed(logits, labels, np.ones(50, np.float32), [50])
    np.testing.assert_allclose(got["accuracy"], 0.9)
    np.testing.assert_allclose(got["nll"], 5 * 200.0 / 50, rtol=1e-6)
    np.testing.assert_allclose(got["ece"], 0.1, atol=1e-6)


def test_predictive_probs_is_mean_of_member_softmaxes():
    rng = np.random.default_rng(3)
    logits, _ = random_predictions(rng, 4, 10, 5)
    np.testing.assert_allclose(
        metrics.predictive_probs(jnp.asarray(logits)), numpy_probs(logits), rtol=1e-5
    )

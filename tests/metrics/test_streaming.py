"""Streaming == whole array: uneven batches, padding rows, 4 fake devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from relbench import metrics
from relbench.metrics import StreamingMetric
from tests.metrics.conftest import make_predictions, predictions


def _padded(array, size, fill):
    pad = np.full((size - len(array),) + array.shape[1:], fill, array.dtype)
    return np.concatenate([array, pad])


def _stream(suite, logits, labels, mask, variance, splits):
    """Uneven batches, each padded with garbage rows (mask 0) and sharded over 4 devices."""
    assert jax.device_count() == 4
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rows = NamedSharding(mesh, PartitionSpec("data"))
    members_rows = NamedSharding(mesh, PartitionSpec(None, "data"))
    replicated = NamedSharding(mesh, PartitionSpec())

    def step(logits, labels, mask, variance):
        p = predictions(logits, labels, mask, extras={"variance": variance})
        return metrics.batch_statistics(suite, p)

    step = jax.jit(
        step,
        in_shardings=(members_rows, rows, rows, members_rows),
        out_shardings=replicated,
    )
    totals = None
    for start, stop in zip(splits[:-1], splits[1:], strict=True):
        size = 104  # one shape for every batch (one compile); >= 3 padding rows each
        batch = (
            np.stack([_padded(m, size, 50.0) for m in logits[:, start:stop]]),
            _padded(labels[start:stop], size, 1),
            _padded(mask[start:stop], size, 0.0),
            np.stack([_padded(v, size, 9.0) for v in variance[:, start:stop]]),
        )
        stats = jax.device_get(step(*batch))
        totals = metrics.add_statistics(suite, totals, stats)
    return metrics.results(suite, totals), metrics.curves(suite, totals)


@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("is_ood", [False, True])
def test_streaming_equals_whole_array(members, is_ood):
    logits, _, labels, mask = make_predictions(members, members, 203, 5, ties=True)
    if is_ood:
        labels = np.full_like(labels, -1)
    variance = np.random.default_rng(0).uniform(size=logits.shape[:2]).astype(np.float32)
    suite = metrics.eval_suite("classification", is_ood)
    whole = predictions(logits, labels, mask, extras={"variance": variance})
    stats = jax.device_get(jax.jit(metrics.batch_statistics, static_argnums=0)(suite, whole))
    whole_totals = metrics.add_statistics(suite, None, stats)
    expected = metrics.results(suite, whole_totals)
    expected_curves = metrics.curves(suite, whole_totals)
    streamed, streamed_curves = _stream(suite, logits, labels, mask, variance, [0, 37, 137, 203])
    assert streamed.keys() == expected.keys()
    for name, value in expected.items():
        assert streamed[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert np.allclose(
        jax.tree.leaves(streamed_curves), jax.tree.leaves(expected_curves), equal_nan=True
    )


def test_concat_statistics_keep_unmasked_rows_in_order():
    metric = StreamingMetric(lambda p: {"label": p.labels}, lambda s: {}, kind="concat")
    first = {"label": np.array([3, 4, 5]), "mask": np.array([1.0, 0.0, 1.0])}
    second = {"label": np.array([6, 7]), "mask": np.array([1.0, 1.0])}
    totals = metrics.add_statistics([metric], None, [first])
    totals = metrics.add_statistics([metric], totals, [second])
    assert totals[0]["label"][0].tolist() == [3, 5]
    assert np.concatenate(totals[0]["label"]).tolist() == [3, 5, 6, 7]


def test_concat_metric_may_not_use_the_mask_key():
    metric = StreamingMetric(lambda p: {"mask": p.mask}, lambda s: {}, kind="concat")
    p = predictions(jnp.zeros((1, 2, 2)), jnp.zeros(2, jnp.int32), jnp.ones(2))
    with pytest.raises(ValueError, match="mask"):
        metrics.batch_statistics([metric], p)


def test_whole_array_functions_stream_in_chunks():
    logits, _, labels, mask = make_predictions(2, 2, 90, 4, ties=True)
    p = predictions(logits, labels, mask)
    whole = metrics.evaluate_arrays(metrics.IN_DISTRIBUTION, p)
    chunked = metrics.evaluate_arrays(metrics.IN_DISTRIBUTION, p, chunk_size=40)
    assert chunked == pytest.approx(whole, rel=1e-5, abs=1e-6, nan_ok=True)

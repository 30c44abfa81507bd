"""Streaming metrics: summable sufficient statistics, then a result.

A ``StreamingMetric`` computes, on device and per batch, statistics that *add up* over
examples (counts, sums, per-bin sums). Because they add, the same numbers come out
whether the data arrives in one array, in uneven batches, or sharded over devices and
hosts: inside ``jit`` the sums run over the global batch, and the host adds the
batches in float64. ``result`` turns the totals into the reported floats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Predictions:
    """What every metric sees for a batch.

    Attributes:
      logits: ``[M, B, K]`` member logits.
      log_probs: ``[B, K]`` log predictive distribution (``predictive_log_probs``).
      labels: ``[B]`` integer labels (``-1`` for OOD examples).
      mask: ``[B]`` 1.0 for real examples, 0.0 for padding.
      extras: the model's extra outputs (e.g. GP variance), each ``[B, ...]``.
      soft_labels: ``[B, K]`` a distribution over classes per example (raters' votes),
        or None where the set has none (``metrics.soft_labels``).

    For regression (``metrics.regression``), ``logits`` are the ``[M, B, O]`` member
    means, ``extras["variance"]`` their ``[M, B, O]`` variances and ``labels`` the
    ``[B, O]`` float targets.
    """

    logits: jax.Array
    log_probs: jax.Array
    labels: jax.Array
    mask: jax.Array
    extras: Mapping[str, jax.Array] = dataclasses.field(default_factory=dict)
    soft_labels: jax.Array | None = None


Statistics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class StreamingMetric:
    """A pair of pure functions: batch -> summable statistics, totals -> results."""

    statistics: Callable[[Predictions], Statistics]
    result: Callable[[Mapping[str, np.ndarray]], dict[str, float]]


def batch_statistics(
    metrics: Sequence[StreamingMetric], predictions: Predictions
) -> list[Statistics]:
    """The statistics of every metric for one batch (call inside ``jit``)."""
    return [metric.statistics(predictions) for metric in metrics]


def add_statistics(totals: list[dict] | None, batch: list[Statistics]) -> list[dict]:
    """Adds one batch's statistics (fetched to host) into float64 running totals."""
    batch = [{k: np.asarray(v, np.float64) for k, v in s.items()} for s in batch]
    if totals is None:
        return batch
    return [{k: t[k] + b[k] for k in t} for t, b in zip(totals, batch, strict=True)]


def results(metrics: Sequence[StreamingMetric], totals: list[dict]) -> dict[str, float]:
    """Merges every metric's results into one ``{name: float}`` dict."""
    out: dict[str, float] = {}
    for metric, total in zip(metrics, totals, strict=True):
        out.update(metric.result(total))
    return out

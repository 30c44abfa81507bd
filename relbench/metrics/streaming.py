"""Streaming metrics: per-batch statistics on device, then a result on the host.

A ``StreamingMetric`` computes, on device and per batch, statistics of one of two
kinds, and the host combines the batches:

* ``kind="sum"`` (the default): statistics that *add up* over examples (counts, sums,
  per-bin sums). The host adds the batches in float64.
* ``kind="concat"``: per-example arrays ``[B, ...]`` (a confidence, a correctness bit,
  an uncertainty score). The host keeps the rows whose ``mask`` is 1 and concatenates
  them in dataset order. Metrics that depend on the ranking of all examples (AUROC,
  AUPR, AURC, equal-mass ECE) need this kind; it costs O(N) host memory per metric,
  which is why rankings are its only use. The framework adds the batch ``mask`` to a
  concat metric's statistics under the key ``"mask"``, so that key is reserved.

Either way the same numbers come out whether the data arrives in one array, in uneven
batches, or sharded over devices and hosts: inside ``jit`` the statistics are computed
over the global batch (the eval step's outputs are replicated), padding rows carry
``mask == 0`` and count nowhere, and ``result`` turns the combined statistics into the
reported floats. ``curves`` (optional) turns them into arrays for plots (reliability
diagrams, risk-coverage curves), which runs write beside their results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

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
      extras: the model's extra outputs, each ``[M, B, ...]`` (e.g. ``"variance"``, a
        GP predictive variance).
      soft_labels: ``[B, K]`` a distribution over classes per example (raters' votes),
        or None where the set has none (``metrics.soft_labels``).
      groups: ``[B, G]`` 0/1 membership of each example in G subpopulations, or None
        where the set has none (``metrics.groups``).

    For regression (``metrics.regression``), ``logits`` are the ``[M, B, O]`` member
    means, ``extras["variance"]`` their ``[M, B, O]`` variances and ``labels`` the
    ``[B, O]`` float targets. For multi-label data (``metrics.multilabel``), ``labels``
    are ``[B, K]`` 0/1 floats (-1 for OOD examples) and ``log_probs`` the ``[B, K]`` log
    predictive probability of each label (``task_log_probs``).
    """

    logits: jax.Array
    log_probs: jax.Array
    labels: jax.Array
    mask: jax.Array
    extras: Mapping[str, jax.Array] = dataclasses.field(default_factory=dict)
    soft_labels: jax.Array | None = None
    groups: jax.Array | None = None


jax.tree_util.register_dataclass(
    Predictions,
    data_fields=["logits", "log_probs", "labels", "mask", "extras", "soft_labels", "groups"],
    meta_fields=[],
)

Statistics = dict[str, jax.Array]
Totals = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class StreamingMetric:
    """Pure functions: batch -> statistics, combined statistics -> results (and curves).

    Attributes:
      statistics: ``Predictions -> {name: array}`` (runs inside ``jit``).
      result: combined statistics -> ``{metric_name: float}``.
      kind: ``"sum"`` (statistics add over batches) or ``"concat"`` (per-example arrays,
        concatenated over the unmasked rows).
      curves: optional combined statistics -> ``{curve_name: nested lists}`` for plots.
    """

    statistics: Callable[[Predictions], Statistics]
    result: Callable[[Totals], dict[str, float]]
    kind: Literal["sum", "concat"] = "sum"
    curves: Callable[[Totals], dict] | None = None

    def __post_init__(self):
        if self.kind not in ("sum", "concat"):
            raise ValueError(f"StreamingMetric kind must be 'sum' or 'concat', got {self.kind}")


def batch_statistics(
    metrics: Sequence[StreamingMetric], predictions: Predictions
) -> list[Statistics]:
    """The statistics of every metric for one batch (call inside ``jit``)."""
    out = []
    for metric in metrics:
        stats = dict(metric.statistics(predictions))
        if metric.kind == "concat":
            if "mask" in stats:
                raise ValueError("a concat metric's statistics may not use the key 'mask'")
            stats["mask"] = predictions.mask
        out.append(stats)
    return out


def add_statistics(
    metrics: Sequence[StreamingMetric], totals: list[dict] | None, batch: list[Statistics]
) -> list[dict]:
    """Combines one batch's statistics (fetched to host) into the running totals.

    Sum statistics are added in float64; concat statistics keep a list of the batch's
    unmasked rows (``combined`` concatenates them).
    """
    if totals is None:
        totals = [{} for _ in metrics]
    out = []
    for metric, total, stats in zip(metrics, totals, batch, strict=True):
        if metric.kind == "sum":
            stats = {k: np.asarray(v, np.float64) for k, v in stats.items()}
            out.append({k: total[k] + v if k in total else v for k, v in stats.items()})
        else:
            keep = np.asarray(stats["mask"]) > 0
            rows = {k: np.asarray(v)[keep] for k, v in stats.items() if k != "mask"}
            out.append({k: [*total.get(k, []), v] for k, v in rows.items()})
    return out


def combined(metric: StreamingMetric, total: Mapping) -> dict[str, np.ndarray]:
    """One metric's running total as arrays: sums as they are, concat rows joined."""
    if metric.kind == "sum":
        return dict(total)
    return {k: np.concatenate(v) for k, v in total.items()}


def results(metrics: Sequence[StreamingMetric], totals: list[dict]) -> dict[str, float]:
    """Merges every metric's results into one ``{name: float}`` dict."""
    out: dict[str, float] = {}
    for metric, total in zip(metrics, totals, strict=True):
        out.update({k: float(v) for k, v in metric.result(combined(metric, total)).items()})
    return out


def curves(metrics: Sequence[StreamingMetric], totals: list[dict]) -> dict:
    """Merges every metric's curves (for plots) into one dict."""
    out: dict = {}
    for metric, total in zip(metrics, totals, strict=True):
        if metric.curves is not None:
            out.update(metric.curves(combined(metric, total)))
    return out


_jit_batch_statistics = jax.jit(batch_statistics, static_argnums=0)

# Whole arrays are summed in chunks of this many examples: float32 sums stay exact to
# ~1e-7 within a chunk, and the chunks add in float64 on the host.
CHUNK_SIZE = 1 << 16


def _rows(p: Predictions, start: int, stop: int) -> Predictions:
    return Predictions(
        logits=p.logits[:, start:stop],
        log_probs=p.log_probs[start:stop],
        labels=p.labels[start:stop],
        mask=p.mask[start:stop],
        extras={k: v[:, start:stop] for k, v in p.extras.items()},
        soft_labels=None if p.soft_labels is None else p.soft_labels[start:stop],
        groups=None if p.groups is None else p.groups[start:stop],
    )


def evaluate_arrays(
    metrics: Sequence[StreamingMetric], predictions: Predictions, chunk_size: int = CHUNK_SIZE
) -> dict[str, float]:
    """Whole-array evaluation through the streaming path, ``chunk_size`` rows at a time."""
    metrics = tuple(metrics)
    totals = None
    for start in range(0, max(predictions.labels.shape[0], 1), chunk_size):
        chunk = _rows(predictions, start, start + chunk_size)
        stats = jax.device_get(_jit_batch_statistics(metrics, chunk))
        totals = add_statistics(metrics, totals, stats)
    return results(metrics, totals)


def sum_in_chunks(fn: Callable[..., Statistics], *arrays, chunk_size: int = CHUNK_SIZE):
    """``fn(*rows)`` summed over chunks of the arrays' leading axis, in float64."""
    n = len(arrays[0])
    totals: dict[str, np.ndarray] = {}
    for start in range(0, max(n, 1), chunk_size):
        stats = jax.device_get(fn(*(a[start : start + chunk_size] for a in arrays)))
        for k, v in stats.items():
            totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    return totals

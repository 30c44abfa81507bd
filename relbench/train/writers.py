"""Run outputs: ``metrics.jsonl``, TensorBoard events, ``results.json``, the terminal,
and (``config.evaluation.save_predictions``) ``predictions.npz``.

Only process 0 writes; every other process gets writers that do nothing, so the loop
never branches on the process index.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
from collections.abc import Mapping, Sequence

import jax
import numpy as np
import tqdm
from tensorboardX import SummaryWriter


class RunWriter:
    """Appends metrics to ``metrics.jsonl`` and TensorBoard; writes the final results."""

    def __init__(self, workdir: pathlib.Path, enabled: bool):
        self.workdir = workdir
        self.enabled = enabled
        self._jsonl = open(workdir / "metrics.jsonl", "a") if enabled else None  # noqa: SIM115
        self._tensorboard = SummaryWriter(str(workdir / "tensorboard")) if enabled else None

    def write(self, step: int, prefix: str, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{f"{prefix}/{k}": float(v) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for name, value in record.items():
            if name != "step" and math.isfinite(value):
                self._tensorboard.add_scalar(name, value, step)

    def write_results(
        self, results: Mapping[str, Mapping[str, float]], curves: Mapping | None = None
    ) -> None:
        """``results.json`` (every metric of every set) and, if given, ``curves.json``."""
        if not self.enabled:
            return
        outputs = {"results.json": json.dumps(results, indent=2, sort_keys=True)}
        if curves is not None:
            outputs["curves.json"] = json.dumps(curves)
        for name, content in outputs.items():
            _write_atomically(self.workdir / name, content)

    def write_posthoc(self, steps: Sequence[Mapping]) -> None:
        """``posthoc.json``: ``{"steps": [{name, hparams, fitted}, ...]}``, in order."""
        if not self.enabled:
            return
        as_lists = jax.tree.map(lambda a: _json_array(a) if isinstance(a, jax.Array) else a, steps)
        _write_atomically(self.workdir / "posthoc.json", json.dumps({"steps": as_lists}, indent=2))

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tensorboard.close()


# Fitted arrays up to this size are written out in posthoc.json; larger ones (a KNN
# bank, isotonic breakpoints) only by shape and dtype: their values are in stages/posthoc.
POSTHOC_JSON_MAX_ELEMENTS = 4096


def _json_array(a: jax.Array):
    if a.size > POSTHOC_JSON_MAX_ELEMENTS:
        return {"shape": list(a.shape), "dtype": str(a.dtype), "values": "in stages/posthoc"}
    return np.asarray(a.addressable_data(0)).tolist()


def _write_atomically(path: pathlib.Path, content: str) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(content + "\n")
    tmp.replace(path)  # never leave a half-written file behind


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm.tqdm:
    """A terminal progress bar with steps/s and the ETA."""
    return tqdm.tqdm(
        total=total,
        initial=initial,
        unit="step",
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )


def results_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A plain-text table: one row per evaluation set, one column per metric."""
    columns = sorted({name for metrics in results.values() for name in metrics})
    header = ["set", *columns]
    rows = [
        [set_name, *(f"{metrics[c]:.4f}" if c in metrics else "-" for c in columns)]
        for set_name, metrics in results.items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


OUTPUT_EXTRAS = ("variance",)  # the extras a metric reads (regression, uncertainty scores)


class PredictionWriter:
    """Collects every evaluation set's member outputs batch by batch; ``save`` writes
    them as ``predictions.npz`` in the format ``relbench evaluate-predictions`` reads
    (``relbench.train.predictions``). Every process collects (the replication is
    collective); process 0 saves."""

    def __init__(self, task: str, mesh: jax.sharding.Mesh):
        self.task = task
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        self._replicate = jax.jit(lambda tree: tree, out_shardings=replicated)
        self._sets: dict[str, dict[str, list[np.ndarray]]] = {}

    def add(self, set_name: str, is_ood: bool, outputs, batch: Mapping) -> None:
        """One global batch's ``(logits [M, B, K], extras)`` and its ``label``/``mask``."""
        logits, extras = outputs
        tree = {"logits": logits, **{k: v for k, v in extras.items() if k in OUTPUT_EXTRAS}}
        tree["labels"] = batch["label"]
        if "soft_label" in batch:
            tree["soft_labels"] = batch["soft_label"]
        tree["mask"] = batch["mask"]
        local = {k: np.asarray(v.addressable_data(0)) for k, v in self._replicate(tree).items()}
        keep = local.pop("mask") > 0  # padding rows are cut off
        entry = self._sets.setdefault(set_name, {"is_ood": [np.asarray(is_ood)]})
        for key, value in local.items():
            rows = value[:, keep] if key in ("logits", *OUTPUT_EXTRAS) else value[keep]
            entry.setdefault(key, []).append(rows)

    def save(self, workdir: pathlib.Path) -> None:
        arrays: dict[str, np.ndarray] = {"task": np.asarray(self.task)}
        for name, fields in self._sets.items():
            for key, parts in fields.items():
                axis = 1 if key in ("logits", *OUTPUT_EXTRAS) else 0  # [M, N, ...] or [N, ...]
                arrays[f"{name}/{key}"] = (
                    parts[0] if key == "is_ood" else np.concatenate(parts, axis)
                )
        tmp = workdir / "predictions.npz.tmp"
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        tmp.replace(workdir / "predictions.npz")

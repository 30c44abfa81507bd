"""Run directories as data: config, results and curves, grouped for a leaderboard.

A run directory holds ``config.json``, ``results.json`` and (since the evaluation
protocol) ``curves.json``, all written by ``train_and_evaluate``. Runs are grouped into
*experiments* (same dataset and model) and, within one, into *rows*: runs whose configs
are equal except for ``seed`` (and ``dataset.split_seed``: the random splits of the UCI
protocol) are one row, shown as mean ± std.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
from collections.abc import Sequence

import numpy as np

from relbench.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished run."""

    directory: pathlib.Path
    config: dict
    results: dict[str, dict[str, float]]
    curves: dict

    @property
    def method(self) -> str:
        return self.config["method"]["name"]

    @property
    def label(self) -> str:
        """The method, with the post-hoc steps after it where the run has any."""
        steps = self.config.get("posthoc") or ()
        return " + ".join([self.method, *steps])

    @property
    def experiment(self) -> str:
        return f"{self.config['dataset']['name']}_{self.config['model']['name']}"

    @property
    def config_key(self) -> str:
        """A digest of the config without its seed and its dataset's ``split_seed`` (the
        UCI protocol's random splits): equal for the seeds and splits of one setting."""
        rest = {k: v for k, v in self.config.items() if k != "seed"}
        if isinstance(rest.get("dataset"), dict) and "split_seed" in rest["dataset"]:
            rest["dataset"] = {k: v for k, v in rest["dataset"].items() if k != "split_seed"}
        return hashlib.sha1(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:8]


def load_run(directory: str | pathlib.Path) -> Run:
    """Reads a run directory; a missing or unfinished run is a UsageError."""
    path = pathlib.Path(directory)
    files = {name: path / f"{name}.json" for name in ("config", "results", "curves")}
    for name in ("config", "results"):
        if not files[name].is_file():
            raise UsageError(
                f"'{path}' has no {name}.json; pass the workdir of a finished `relbench train` run"
            )
    curves = json.loads(files["curves"].read_text()) if files["curves"].is_file() else {}
    return Run(
        path,
        json.loads(files["config"].read_text()),
        json.loads(files["results"].read_text()),
        curves,
    )


@dataclasses.dataclass(frozen=True)
class Row:
    """The runs of one method setting in one experiment (one per seed)."""

    label: str
    runs: tuple[Run, ...]

    def values(self, set_name: str, metric: str) -> np.ndarray:
        """The metric over seeds (runs missing it are left out; NaNs kept)."""
        return np.array(
            [
                r.results[set_name][metric]
                for r in self.runs
                if metric in r.results.get(set_name, {})
            ],
            np.float64,
        )

    def has(self, set_name: str, metric: str) -> bool:
        return len(self.values(set_name, metric)) > 0

    def first(self) -> Run:
        """The run with the smallest seed: the one whose curves are plotted."""
        return min(self.runs, key=lambda r: r.config["seed"])


def group_runs(runs: Sequence[Run]) -> dict[str, list[Row]]:
    """``{experiment: [rows]}``; a method with several settings gets a config digest."""
    out: dict[str, list[Row]] = {}
    for experiment in sorted({r.experiment for r in runs}):
        members = [r for r in runs if r.experiment == experiment]
        settings: dict[tuple[str, str], list[Run]] = {}
        for run in members:
            settings.setdefault((run.label, run.config_key), []).append(run)
        methods = [m for m, _ in settings]
        rows = []
        for (method, key), group in sorted(settings.items()):
            label = method if methods.count(method) == 1 else f"{method} [{key}]"
            rows.append(Row(label, tuple(sorted(group, key=lambda r: r.config["seed"]))))
        out[experiment] = rows
    return out


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0 for one run) ignoring NaNs; NaN if none finite."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0

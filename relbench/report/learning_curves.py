"""Active learning in the report: learning curves of ``relbench active-learn`` workdirs.

An active-learning workdir holds ``config.json`` and ``learning_curve.json`` (number of
labels and the curve set's accuracy, NLL and ECE after each round;
``relbench.tasks.active_learning``). Workdirs whose configs are equal except for
``seed`` and the acquisition function are one experiment; within it, each acquisition
function is one curve: the mean over seeds, the band one sample standard deviation
either side (none for a single seed). A table gives the final round's numbers.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Sequence

import numpy as np

from relbench.errors import UsageError
from relbench.report.plots import _grid, _save

CURVE_FILE = "learning_curve.json"
METRICS = {"accuracy": "accuracy", "nll": "NLL", "ece": "ECE"}


def is_active_learning(directory: str | pathlib.Path) -> bool:
    return (pathlib.Path(directory) / CURVE_FILE).is_file()


def _experiment(config: dict) -> str:
    rest = {k: v for k, v in config.items() if k != "seed"}
    rest["active_learning"] = {
        k: v for k, v in rest.get("active_learning", {}).items() if k != "acquisition"
    }
    base = config["dataset"]["name"]
    digest = hashlib.sha1(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:8]
    return f"active learning: {base} {config['method']['name']} ({digest})"


def load_curves(directories: Sequence[str | pathlib.Path]) -> dict[str, dict[str, list[dict]]]:
    """``{experiment: {acquisition: [curve per seed]}}``."""
    out: dict[str, dict[str, list[dict]]] = {}
    for directory in directories:
        path = pathlib.Path(directory)
        if not (path / "config.json").is_file():
            raise UsageError(f"'{path}' has no config.json; pass a `relbench active-learn` workdir")
        config = json.loads((path / "config.json").read_text())
        curve = json.loads((path / CURVE_FILE).read_text())
        out.setdefault(_experiment(config), {}).setdefault(curve["acquisition"], []).append(curve)
    return out


def _stack(curves: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and ``[seeds, rounds]`` values over the rounds every seed finished."""
    rounds = min(len(c["num_labels"]) for c in curves)
    labels = np.asarray(curves[0]["num_labels"][:rounds])
    return labels, np.asarray([c[metric][:rounds] for c in curves], np.float64)


def figure(experiment: str, by_acquisition: dict[str, list[dict]], path: pathlib.Path):
    """Accuracy, NLL and ECE against labels, one curve per acquisition function."""
    fig, axes = _grid(len(METRICS), size=3.5)
    for ax, (metric, title) in zip(axes, METRICS.items(), strict=True):
        for acquisition, curves in sorted(by_acquisition.items()):
            labels, values = _stack(curves, metric)
            mean = values.mean(0)
            ax.plot(labels, mean, marker=".", label=f"{acquisition} ({len(curves)} seeds)")
            if len(curves) > 1:
                spread = values.std(0, ddof=1)
                ax.fill_between(labels, mean - spread, mean + spread, alpha=0.2)
        ax.set_xlabel("labelled examples")
        ax.set_title(title)
    axes[0].legend(fontsize="small")
    fig.suptitle(experiment, fontsize="small")
    return _save(fig, path)


def final_table(by_acquisition: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: the last round's mean ± std per acquisition function."""
    lines = ["| acquisition | labels | " + " | ".join(METRICS.values()) + " |"]
    lines.append("|---" * (len(METRICS) + 2) + "|")
    for acquisition, curves in sorted(by_acquisition.items()):
        cells = []
        for metric in METRICS:
            labels, values = _stack(curves, metric)
            last = values[:, -1]
            spread = f" ± {last.std(ddof=1):.4f}" if len(last) > 1 else ""
            cells.append(f"{last.mean():.4f}{spread}")
        lines.append(f"| {acquisition} | {labels[-1]} | " + " | ".join(cells) + " |")
    return lines

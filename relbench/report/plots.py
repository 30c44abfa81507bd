"""The report's PNG figures, drawn with matplotlib (Agg, no display needed).

Per experiment, from the first seed of each method: reliability diagrams, risk-coverage
curves, accuracy and ECE against corruption severity, and histograms of the OOD score
(predictive entropy) for the in-distribution reference set and each OOD set.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from relbench.data.corruptions import parse_shift_set_name  # noqa: E402
from relbench.report.leaderboard import (  # noqa: E402
    HEADLINE_SCORE,
    ood_sets,
    reference_set,
    shift_families,
)
from relbench.report.runs import Row  # noqa: E402

DPI = 110


def _grid(count: int, size: float = 3.0, max_columns: int = 4):
    columns = min(count, max_columns)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(size * columns, size * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def reliability(rows: Sequence[Row], set_name: str, path: pathlib.Path) -> pathlib.Path | None:
    """Accuracy per confidence bin against the diagonal, the gap shaded, per method."""
    rows = [r for r in rows if "reliability" in r.first().curves.get(set_name, {})]
    if not rows:
        return None
    fig, axes = _grid(len(rows))
    for ax, row in zip(axes, rows, strict=False):
        diagram = row.first().curves[set_name]["reliability"]
        edges = np.array(diagram["edges"])
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        accuracy = np.nan_to_num(np.array(diagram["accuracy"], float))
        confidence = np.array(diagram["confidence"], float)
        filled = np.isfinite(confidence)
        ax.bar(centres, accuracy, width, color="tab:blue", edgecolor="white", label="accuracy")
        low = np.minimum(confidence[filled], accuracy[filled])
        ax.bar(
            centres[filled],
            np.abs(confidence[filled] - accuracy[filled]),
            width[filled],
            bottom=low,
            facecolor="none",
            edgecolor="tab:red",
            hatch="//",
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ece = row.first().results[set_name].get("ece", float("nan"))
        ax.set(title=f"{row.label}  ECE {ece:.3f}", xlim=(0, 1), ylim=(0, 1))
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Reliability diagrams ({set_name})")
    return _save(fig, path)


def risk_coverage(rows: Sequence[Row], set_name: str, path: pathlib.Path) -> pathlib.Path | None:
    """Selective risk against coverage, one line per method."""
    rows = [r for r in rows if "risk_coverage" in r.first().curves.get(set_name, {})]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    for row in rows:
        curve = row.first().curves[set_name]["risk_coverage"]
        aurc = row.first().results[set_name].get("aurc", float("nan"))
        ax.plot(curve["coverage"], curve["risk"], label=f"{row.label} (AURC {aurc:.3f})")
    ax.set(
        xlabel="coverage",
        ylabel="risk (error rate)",
        xlim=(0, 1),
        title=f"Risk-coverage ({set_name})",
    )
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _by_severity(run, family: str, clean: str, metric: str) -> tuple[list[int], list[float]]:
    per_severity: dict[int, list[float]] = {}
    for name, metrics in run.results.items():
        parsed = parse_shift_set_name(name)
        if parsed is not None and parsed[0] == family and metric in metrics:
            per_severity.setdefault(parsed[2], []).append(metrics[metric])
    severities = sorted(per_severity)
    values = [float(np.mean(per_severity[s])) for s in severities]
    if metric in run.results.get(clean, {}):
        severities, values = [0, *severities], [run.results[clean][metric], *values]
    return severities, values


def shift(rows: Sequence[Row], family: str, clean: str, path: pathlib.Path) -> pathlib.Path:
    """Accuracy and ECE (means over corruptions) against severity; 0 is the clean set."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for ax, (metric, title) in zip(axes, [("accuracy", "accuracy"), ("ece", "ECE")], strict=True):
        for row in rows:
            severities, values = _by_severity(row.first(), family, clean, metric)
            ax.plot(severities, values, marker="o", label=row.label)
        ax.set(xlabel="severity (0 = clean)", ylabel=title, title=f"{title} under {family}")
        ax.set_xticks(range(0, 6))
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def conformal_shift(
    rows: Sequence[Row], family: str, clean: str, path: pathlib.Path
) -> pathlib.Path | None:
    """Conformal coverage and mean set size (means over corruptions) against severity:
    how far a set calibrated on clean data keeps its coverage under shift."""
    rows = [r for r in rows if "coverage" in r.first().results.get(clean, {})]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for ax, (metric, title) in zip(
        axes, [("coverage", "coverage"), ("mean_set_size", "mean set size")], strict=True
    ):
        for row in rows:
            severities, values = _by_severity(row.first(), family, clean, metric)
            ax.plot(severities, values, marker="o", label=row.label)
        ax.set(xlabel="severity (0 = clean)", ylabel=title, title=f"conformal {title}, {family}")
        ax.set_xticks(range(0, 6))
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def ood_histograms(
    rows: Sequence[Row], sets: Sequence[str], reference: str, path: pathlib.Path
) -> pathlib.Path | None:
    """Histograms of the headline score, in-distribution vs each OOD set, per method."""
    key = f"histogram/{HEADLINE_SCORE}"
    pairs = [(r, s) for s in sets for r in rows if key in r.first().curves.get(s, {})]
    if not pairs:
        return None
    fig, axes = _grid(len(pairs))
    for ax, (row, name) in zip(axes, pairs, strict=False):
        histogram = row.first().curves[name][key]
        edges = np.array(histogram["edges"])
        for counts, label, colour in [
            (histogram["in"], reference, "tab:blue"),
            (histogram["out"], name, "tab:orange"),
        ]:
            density = np.array(counts, float) / max(1.0, np.sum(counts) * np.diff(edges)[0])
            ax.stairs(density, edges, fill=True, alpha=0.5, color=colour, label=label)
        auroc = row.first().results[name].get(f"auroc/{HEADLINE_SCORE}", float("nan"))
        ax.set(title=f"{row.label}: {name}\nAUROC {auroc:.3f}", xlabel=HEADLINE_SCORE)
        ax.legend(fontsize=7)
    fig.suptitle(f"OOD scores ({HEADLINE_SCORE}; larger = more uncertain)")
    return _save(fig, path)


def experiment_figures(
    experiment: str, rows: Sequence[Row], out: pathlib.Path
) -> list[pathlib.Path]:
    """Every figure of one experiment, written under ``out``."""
    test = reference_set(rows)
    figures = [
        reliability(rows, test, out / f"{experiment}_reliability.png"),
        risk_coverage(rows, test, out / f"{experiment}_risk_coverage.png"),
        *(
            shift(rows, f, test, out / f"{experiment}_{f}_severity.png")
            for f in shift_families(rows)
        ),
        ood_histograms(rows, ood_sets(rows), test, out / f"{experiment}_ood_histograms.png"),
        *(
            conformal_shift(rows, f, test, out / f"{experiment}_{f}_conformal.png")
            for f in shift_families(rows)
        ),
    ]
    return [f for f in figures if f is not None]

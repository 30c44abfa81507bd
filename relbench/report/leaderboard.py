"""Leaderboard tables (one row per method, mean ± std over seeds) as markdown and HTML.

Each experiment (dataset x model) gets a headline table — in-distribution test metrics,
each shift suite's ``cAcc/cNLL/cECE``, and each OOD set's AUROC and FPR@95 with the
predictive entropy as the score — and detail tables: calibration and selective
prediction, OOD detection by score, ensemble diversity. The best mean of each column is
bold (arrows say which way is better) where the column is informative: two or more
different values (a score a method does not have is "–", never a constant). A mean
whose distance to the best is within the sum of their standard deviations over seeds
is marked "≈": the difference is smaller than the spread.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Sequence

from relbench.report.runs import Row, mean_std

HEADLINE_SCORE = "entropy"
SCORES = (
    "max_prob",
    "entropy",
    "mutual_information",
    "max_logit",
    "energy",
    "joint_energy",
    "variance",
    # The feature-space detectors' scores (relbench.posthoc.feature_detectors).
    "mahalanobis",
    "relative_mahalanobis",
    "ddu",
    "knn",
    "vim",
    "react",
    "odin",  # relbench.posthoc.odin (input perturbation)
)
# (title, metric, higher is better): before (raw/) and after the post-hoc steps.
POSTHOC_CALIBRATION = tuple(
    (f"{title} {when}", f"{prefix}{metric}", False)
    for title, metric in (("ECE", "ece"), ("NLL", "nll"), ("Brier", "brier"))
    for when, prefix in (("raw", "raw/"), ("after", ""))
)
# Conformal prediction sets and intervals (relbench.metrics.conformal).
CONFORMAL = (
    ("coverage", "coverage", None),
    ("mean set size", "mean_set_size", False),
    ("worst-class coverage", "worst_class_coverage", True),
    ("worst size-bin coverage", "worst_size_coverage", True),
    ("interval coverage", "interval_coverage", None),
    ("interval width", "interval_width", False),
    ("Winkler score", "winkler_score", False),
)
# (title, metric, higher is better) on the in-distribution reference set.
TEST_HEADLINE = (
    ("Acc", "accuracy", True),
    ("label acc", "label_accuracy", True),  # multi-label sets
    ("mAP", "mean_average_precision", True),
    ("NLL", "nll", False),
    ("ECE", "ece", False),
    ("Brier", "brier", False),
    ("AURC", "aurc", False),
)
CALIBRATION = (
    ("ECE", "ece", False),
    ("adaptive ECE", "adaptive_ece", False),
    ("classwise ECE", "classwise_ece", False),
    ("RMS-CE", "rms_calibration_error", False),
    ("MCE", "mce", False),
    ("calibration AUC", "calibration_auc", True),
    ("Brier reliability", "brier_reliability", False),
    ("Brier resolution", "brier_resolution", True),
    ("acc@90% coverage", "accuracy@coverage=0.9", True),
    ("oracle acc@5% deferred", "oracle_accuracy@deferral=0.05", True),
)
DIVERSITY = (
    ("predictive entropy", "predictive_entropy"),
    ("expected member entropy", "expected_member_entropy"),
    ("mutual information", "mutual_information"),
    ("disagreement", "disagreement"),
    ("pairwise KL", "pairwise_kl"),
)


@dataclasses.dataclass(frozen=True)
class Column:
    title: str
    set_name: str
    metric: str
    higher_is_better: bool | None  # None: descriptive, nothing is "best"

    @property
    def header(self) -> str:
        arrow = {True: " ↑", False: " ↓", None: ""}[self.higher_is_better]
        return self.title + arrow


@dataclasses.dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]

    def cells(self) -> list[list[tuple[str, bool]]]:
        """``(text, is_best)`` for every row and column."""
        stats = [
            [mean_std(row.values(c.set_name, c.metric)) for c in self.columns] for row in self.rows
        ]
        best = [self._best(j, [s[j] for s in stats]) for j in range(len(self.columns))]
        out = []
        for row, row_stats in zip(self.rows, stats, strict=True):
            n = len(row.runs)
            cells = []
            for j, (mean, std) in enumerate(row_stats):
                if not math.isfinite(mean):
                    cells.append(("–", False))
                    continue
                text = f"{mean:.4g}" + (f" ± {std:.2g}" if n > 1 else "")
                if best[j] is not None and mean != best[j][0]:
                    if abs(mean - best[j][0]) <= std + best[j][1]:
                        text += " ≈"  # within the spread of the best: not distinguishable
                cells.append((text, best[j] is not None and mean == best[j][0]))
            out.append(cells)
        return out

    def _best(self, j: int, column_stats) -> tuple[float, float] | None:
        """The best ``(mean, std)`` of column ``j``; None where nothing is informative:
        a descriptive column, fewer than two finite values, or all of them equal."""
        finite = [(m, s) for m, s in column_stats if math.isfinite(m)]
        if self.columns[j].higher_is_better is None or len({m for m, _ in finite}) < 2:
            return None
        pick = max if self.columns[j].higher_is_better else min
        return pick(finite, key=lambda ms: ms[0])


def _sets(rows: Sequence[Row], predicate) -> list[str]:
    names: list[str] = []
    for row in rows:
        for run in row.runs:
            for name, metrics in run.results.items():
                if predicate(name, metrics) and name not in names:
                    names.append(name)
    return names


def reference_set(rows: Sequence[Row]) -> str:
    """The in-distribution set reported in the headline (``test`` if present)."""
    labelled = _sets(rows, lambda n, m: "accuracy" in m and "/" not in n)
    return "test" if "test" in labelled else (labelled[0] if labelled else "test")


def ood_sets(rows: Sequence[Row]) -> list[str]:
    return _sets(rows, lambda n, m: any(k.startswith("auroc/") for k in m))


def shift_families(rows: Sequence[Row]) -> list[str]:
    return _sets(rows, lambda n, m: "cAcc" in m)


def tables(experiment: str, rows: Sequence[Row]) -> list[Table]:
    """The headline and detail tables of one experiment (empty tables left out)."""
    test = reference_set(rows)
    headline = [Column(title, test, metric, up) for title, metric, up in TEST_HEADLINE]
    for family in shift_families(rows):
        headline += [
            Column(f"{family} cAcc", family, "cAcc", True),
            Column(f"{family} cNLL", family, "cNLL", False),
            Column(f"{family} cECE", family, "cECE", False),
        ]
    for name in ood_sets(rows):
        headline += [
            Column(f"{name} AUROC", name, f"auroc/{HEADLINE_SCORE}", True),
            Column(f"{name} FPR95", name, f"fpr95/{HEADLINE_SCORE}", False),
        ]
    calibration = [Column(title, test, metric, up) for title, metric, up in CALIBRATION]
    detection = []
    for name in ood_sets(rows):
        detection += [Column(f"{name} AUROC [{s}]", name, f"auroc/{s}", True) for s in SCORES]
        detection += [
            Column(f"{name} AUPR-in", name, f"aupr_in/{HEADLINE_SCORE}", True),
            Column(f"{name} AUPR-out", name, f"aupr_out/{HEADLINE_SCORE}", True),
        ]
    diversity = [Column(title, test, metric, None) for title, metric in DIVERSITY]
    posthoc = [Column(title, test, metric, up) for title, metric, up in POSTHOC_CALIBRATION]
    conformal = [Column(title, test, metric, up) for title, metric, up in CONFORMAL]
    out = [
        Table(f"{experiment}: leaderboard", tuple(headline), tuple(rows)),
        Table(
            f"{experiment}: calibration and selective prediction ({test})",
            tuple(calibration),
            tuple(rows),
        ),
        Table(
            f"{experiment}: OOD detection (OOD positive, pooled with {test}; "
            f"AUPR with the {HEADLINE_SCORE} score)",
            tuple(detection),
            tuple(rows),
        ),
        Table(f"{experiment}: ensemble diversity ({test})", tuple(diversity), tuple(rows)),
        Table(
            f"{experiment}: post-hoc calibration ({test}; raw model vs after the steps)",
            tuple(posthoc),
            tuple(rows),
        ),
        Table(f"{experiment}: conformal prediction ({test})", tuple(conformal), tuple(rows)),
    ]
    return [
        Table(t.title, cols, t.rows)
        for t in out
        if (cols := tuple(c for c in t.columns if any(r.has(c.set_name, c.metric) for r in rows)))
    ]


def markdown(table: Table) -> str:
    header = ["method", "runs", *(c.header for c in table.columns)]
    lines = [f"### {table.title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    for row, cells in zip(table.rows, table.cells(), strict=True):
        texts = [f"**{t}**" if best else t for t, best in cells]
        lines.append("| " + " | ".join([row.label, str(len(row.runs)), *texts]) + " |")
    return "\n".join(lines) + "\n"


def html_table(table: Table) -> str:
    head = "".join(
        f"<th>{html.escape(h)}</th>" for h in ["method", "runs", *(c.header for c in table.columns)]
    )
    body = []
    for row, cells in zip(table.rows, table.cells(), strict=True):
        tds = "".join(
            f'<td class="{"best" if best else ""}">{html.escape(t)}</td>' for t, best in cells
        )
        body.append(f"<tr><td>{html.escape(row.label)}</td><td>{len(row.runs)}</td>{tds}</tr>")
    return (
        f"<h3>{html.escape(table.title)}</h3>\n<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>\n"
    )

"""``relbench report RUN_DIR [RUN_DIR ...] --out DIR``: leaderboards and figures.

Writes into ``DIR``: ``leaderboard.md``, a self-contained ``leaderboard.html`` (styles
inline, figures embedded as data URIs: one file to mail or attach), and the PNG figures
of ``plots``. Everything comes from the runs' ``config.json``, ``results.json`` and
``curves.json``; nothing is typed by hand.
"""

from __future__ import annotations

import base64
import html
import pathlib
from collections.abc import Sequence

from relbench.errors import UsageError
from relbench.report import leaderboard, learning_curves, plots
from relbench.report.runs import Run, group_runs, load_run

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
td.best { font-weight: bold; background: #eef7ee; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
p.note { color: #555; max-width: 60em; }
"""

CONVENTIONS = (
    "Mean ± sample std over seeds and data splits (runs sharing a config up to its seed "
    "and dataset.split_seed); best mean in "
    "bold. Metrics are on the in-distribution test set unless a column names a set. OOD "
    "sets are pooled with the test set and OOD is the positive class; the headline OOD "
    f"score is the predictive {leaderboard.HEADLINE_SCORE}. cAcc/cNLL/cECE average over "
    "every corruption and severity of a shift suite."
)


def write_report(
    run_dirs: Sequence[str | pathlib.Path], out: str | pathlib.Path
) -> list[pathlib.Path]:
    """Writes the report; returns the paths written (markdown, HTML, figures)."""
    if not run_dirs:
        raise UsageError("report needs at least one RUN_DIR: relbench report RUN_DIR ... --out DIR")
    curve_dirs = [d for d in run_dirs if learning_curves.is_active_learning(d)]
    runs: list[Run] = [load_run(d) for d in run_dirs if d not in curve_dirs]
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = ["# relbench leaderboard", "", CONVENTIONS, ""]
    body = [f"<h1>relbench leaderboard</h1><p class='note'>{html.escape(CONVENTIONS)}</p>"]
    written = []
    for experiment, rows in group_runs(runs).items():
        md.append(f"## {experiment}\n")
        body.append(f"<h2>{html.escape(experiment)}</h2>")
        for table in leaderboard.tables(experiment, rows):
            md.append(leaderboard.markdown(table))
            body.append(leaderboard.html_table(table))
        for figure in plots.experiment_figures(experiment, rows, out):
            written.append(figure)
            md.append(f"![{figure.stem}]({figure.name})\n")
            data = base64.b64encode(figure.read_bytes()).decode()
            body.append(
                f'<img alt="{html.escape(figure.stem)}" src="data:image/png;base64,{data}">'
            )
        md.append("Runs: " + ", ".join(f"`{r.directory}`" for row in rows for r in row.runs) + "\n")
    for index, (experiment, curves) in enumerate(learning_curves.load_curves(curve_dirs).items()):
        md.extend([f"## {experiment}\n", *learning_curves.final_table(curves), ""])
        body.append(f"<h2>{html.escape(experiment)}</h2>")
        body.append(f"<pre>{html.escape(chr(10).join(learning_curves.final_table(curves)))}</pre>")
        figure = learning_curves.figure(experiment, curves, out / f"learning_curves_{index}.png")
        written.append(figure)
        md.append(f"![{figure.stem}]({figure.name})\n")
        data = base64.b64encode(figure.read_bytes()).decode()
        body.append(f'<img alt="{html.escape(figure.stem)}" src="data:image/png;base64,{data}">')
    (out / "leaderboard.md").write_text("\n".join(md))
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>relbench leaderboard</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    (out / "leaderboard.html").write_text(page)
    return [out / "leaderboard.md", out / "leaderboard.html", *written]


__all__ = ["write_report"]

"""The report's post-hoc tables and figures, from run directories written by hand (no
training): calibration before/after, conformal coverage and size, coverage against
severity, and the detectors' AUROC beside the model's own scores."""

import json

from relbench.report import leaderboard, plots
from relbench.report.runs import group_runs, load_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(directory, posthoc, results):
    directory.mkdir()
    config = {
        "seed": 0,
        "method": {"name": "deterministic"},
        "dataset": {"name": "digits"},
        "model": {"name": "mlp"},
        "posthoc": list(posthoc),
    }
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "results.json").write_text(json.dumps(results))


def test_posthoc_tables_and_the_coverage_against_severity_plot(tmp_path):
    shift = {
        f"digits_c/contrast/{s}": {
            "accuracy": 0.9 - s / 10,
            "ece": 0.1,
            "coverage": 0.9 - s / 20,
            "mean_set_size": 1 + s,
        }
        for s in (1, 5)
    }
    raw = {"accuracy": 0.9, "ece": 0.2, "nll": 0.5, "brier": 0.2}
    write_run(tmp_path / "plain", (), {"test": raw, "digits_c": {"cAcc": 0.6}, **shift})
    steps = ("temperature_scaling", "conformal_aps", "mahalanobis")
    test = {
        **{f"raw/{k}": v for k, v in raw.items()},
        **raw,
        "ece": 0.05,
        "nll": 0.3,
        "coverage": 0.91,
        "mean_set_size": 1.7,
        "worst_class_coverage": 0.8,
    }
    ood = {"auroc/entropy": 0.8, "auroc/mahalanobis": 0.95, "fpr95/entropy": 0.5}
    write_run(
        tmp_path / "steps",
        steps,
        {"test": test, "ood_heldout": ood, "digits_c": {"cAcc": 0.6}, **shift},
    )
    (rows,) = group_runs([load_run(tmp_path / "plain"), load_run(tmp_path / "steps")]).values()
    md = "\n".join(leaderboard.markdown(t) for t in leaderboard.tables("digits_mlp", rows))
    posthoc_table = md.split("post-hoc calibration")[1].split("###")[0]
    assert (
        "| deterministic + temperature_scaling + conformal_aps + mahalanobis | 1 |" in posthoc_table
    )
    assert "ECE raw" in posthoc_table and "| 0.2 | **0.05** |" in posthoc_table
    conformal = md.split("conformal prediction")[1].split("###")[0]
    assert "0.91" in conformal and "1.7" in conformal and "0.8" in conformal
    assert "ood_heldout AUROC [mahalanobis]" in md
    figure = plots.conformal_shift(rows, "digits_c", "test", tmp_path / "conformal.png")
    assert figure.read_bytes().startswith(PNG_MAGIC)
    only_plain = [r for r in rows if r.label == "deterministic"]
    assert plots.conformal_shift(only_plain, "digits_c", "test", tmp_path / "none.png") is None

"""``relbench report`` on tiny real runs: markdown, self-contained HTML, PNG figures."""

import json
import pathlib

import numpy as np
import pytest

from relbench import data
from relbench.cli import main
from relbench.cli.benchmark import load_config
from relbench.train.loop import train_and_evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two seeds of a smoke digits run (one leaderboard row, mean ± std)."""
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1):
        config = load_config("experiments/digits_mlp.py", "deterministic,smoke")
        config.unlock()
        config.seed = seed
        train_and_evaluate(config, root / f"seed{seed}")
        dirs.append(root / f"seed{seed}")
    return dirs


def test_results_hold_the_whole_protocol(runs):
    results = json.loads((runs[0] / "results.json").read_text())
    shift_sets = [n for n in results if n.startswith("digits_c/")]
    assert sorted(shift_sets) == [
        f"digits_c/{c}/{s}" for c in ("contrast", "gaussian_noise") for s in (1, 5)
    ]
    for short, metric in (("cAcc", "accuracy"), ("cNLL", "nll"), ("cECE", "ece")):
        expected = np.mean([results[n][metric] for n in shift_sets])
        assert results["digits_c"][short] == pytest.approx(expected)
    for ood in ("ood_noise", "ood_heldout"):
        for metric in ("auroc", "aupr_in", "aupr_out", "fpr95"):
            assert 0.0 <= results[ood][f"{metric}/entropy"] <= 1.0
    for name in ("disagreement", "pairwise_kl", "mutual_information"):
        assert name not in results["test"]  # one member: constant 0, not reported
    for ood in ("ood_noise", "ood_heldout"):
        assert not any(k.endswith("/mutual_information") for k in results[ood])
    curves = json.loads((runs[0] / "curves.json").read_text())
    # Every example counted once, though the last eval batch is padded.
    dataset = data.make("digits", held_out_classes=(8, 9))
    num_test = len(dataset.eval_sets["test"].source)
    assert sum(curves["test"]["reliability"]["count"]) == num_test
    histogram = curves["ood_heldout"]["histogram/entropy"]
    assert sum(histogram["in"]) == num_test
    assert sum(histogram["out"]) == len(dataset.eval_sets["ood_heldout"].source) == 354


def test_report_writes_markdown_html_and_pngs(runs, tmp_path):
    out = tmp_path / "report"
    main(["relbench", "report", *map(str, runs), "--out", str(out)])  # returns: success
    md = (out / "leaderboard.md").read_text()
    assert "| deterministic | 2 |" in md and " ± " in md
    assert "digits_c cAcc" in md and "ood_heldout AUROC" in md
    html = (out / "leaderboard.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "<link" not in html and 'src="http' not in html  # self-contained
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "digits_mlp_digits_c_severity.png",
        "digits_mlp_ood_histograms.png",
        "digits_mlp_reliability.png",
        "digits_mlp_risk_coverage.png",
    ]
    for png in pngs:
        assert pathlib.Path(out / png).read_bytes()[:8] == PNG_MAGIC


def test_report_of_a_directory_without_results_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["relbench", "report", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "has no config.json" in capsys.readouterr().err


class _FakeRow:
    def __init__(self, values):
        self.runs = [None] * len(values)
        self._values = np.asarray(values, float)

    def values(self, set_name, metric):
        del set_name, metric
        return self._values


def test_only_informative_values_are_bold_and_ties_within_the_spread_are_marked():
    from relbench.report.leaderboard import Column, Table

    column = (Column("AUROC", "ood", "auroc/entropy", True),)
    rows = (_FakeRow([0.92, 0.94, 0.93]), _FakeRow([0.80, 0.81, 0.79]), _FakeRow([0.925] * 3))
    cells = [row[0] for row in Table("t", column, rows).cells()]
    assert cells[0][1] and not cells[1][1] and not cells[2][1]  # the best mean only
    assert cells[2][0].endswith(" ≈") and not cells[1][0].endswith(" ≈")
    constant = (_FakeRow([0.5, 0.5]), _FakeRow([0.5, 0.5]))  # nothing to rank: no bold
    assert not any(c[0][1] for c in Table("t", column, constant).cells())
    missing = (_FakeRow([np.nan]), _FakeRow([0.7]))  # an omitted score is "–", not best
    assert [c[0] for c in Table("t", column, missing).cells()] == [("–", False), ("0.7", False)]

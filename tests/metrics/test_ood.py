"""OOD detection on the ID + OOD mixture, OOD positive, against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from relbench.metrics import ood


@pytest.mark.parametrize("ties", [False, True])
def test_detection_against_sklearn(ties):
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(size=300), rng.normal(1.0, size=120)
    if ties:
        inside, outside = np.round(inside), np.round(outside)
    scores = np.r_[inside, outside]
    is_ood = np.r_[np.zeros(300), np.ones(120)]
    out = ood.detection_metrics(inside, outside)
    assert out["auroc"] == pytest.approx(roc_auc_score(is_ood, scores))
    assert out["aupr_out"] == pytest.approx(average_precision_score(is_ood, scores))
    assert out["aupr_in"] == pytest.approx(average_precision_score(1 - is_ood, -scores))
    fpr, tpr, _ = roc_curve(is_ood, scores, drop_intermediate=False)
    assert out["fpr95"] == fpr[np.argmax(tpr >= 0.95)]


def test_results_name_metric_and_score_and_histograms_count_everything():
    rng = np.random.default_rng(1)
    inside = {"entropy": rng.uniform(size=50), "energy": rng.normal(size=50)}
    outside = {"entropy": rng.uniform(size=20) + 0.5, "energy": rng.normal(size=20)}
    out = ood.detection_results(inside, outside)
    assert set(out) == {
        f"{m}/{s}" for m in ("auroc", "aupr_in", "aupr_out", "fpr95") for s in ("entropy", "energy")
    }
    assert out["auroc/entropy"] > 0.5
    histograms = ood.score_histograms(inside, outside)
    assert sum(histograms["histogram/entropy"]["in"]) == 50
    assert sum(histograms["histogram/entropy"]["out"]) == 20

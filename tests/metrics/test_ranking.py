"""AUROC, average precision and FPR@TPR against scikit-learn and a threshold loop."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from relbench.metrics import ranking


def _data(seed, n=300, ties=False):
    rng = np.random.default_rng(seed)
    positives = rng.uniform(size=n) < 0.3
    scores = rng.normal(size=n) + positives
    if ties:
        scores = np.round(scores * 2) / 2
    return scores, positives


def _fpr_at_tpr_loop(scores, positives, level):
    """Scan thresholds from the largest score down; stop at the first TPR >= level."""
    for t in sorted(set(scores), reverse=True):
        flagged = scores >= t
        if np.mean(flagged[positives]) >= level:
            return np.mean(flagged[~positives])
    raise AssertionError("unreachable")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_against_sklearn_and_loops(seed, ties):
    scores, positives = _data(seed, ties=ties)
    assert ranking.auroc(scores, positives) == pytest.approx(roc_auc_score(positives, scores))
    assert ranking.average_precision(scores, positives) == pytest.approx(
        average_precision_score(positives, scores)
    )
    for level in (0.5, 0.9, 0.95, 1.0):
        assert ranking.fpr_at_tpr(scores, positives, level) == pytest.approx(
            _fpr_at_tpr_loop(scores, positives, level)
        )
    fpr, tpr, _ = roc_curve(positives, scores, drop_intermediate=False)
    assert ranking.fpr_at_tpr(scores, positives, 0.95) == fpr[np.argmax(tpr >= 0.95)]


def test_auroc_is_the_mann_whitney_pair_count():
    scores, positives = _data(3, n=60, ties=True)
    pos, neg = scores[positives], scores[~positives]
    pairs = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    assert ranking.auroc(scores, positives) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_single_class_is_nan_not_an_error():
    scores = np.arange(5.0)
    assert np.isnan(ranking.auroc(scores, np.ones(5, bool)))
    assert np.isnan(ranking.auroc(scores, np.zeros(5, bool)))
    assert np.isnan(ranking.average_precision(scores, np.zeros(5, bool)))
    assert ranking.average_precision(scores, np.ones(5, bool)) == 1.0
    assert np.isnan(ranking.fpr_at_tpr(scores, np.ones(5, bool)))


def test_all_scores_tied_is_chance():
    positives = np.array([1, 0, 1, 0, 0], bool)
    assert ranking.auroc(np.zeros(5), positives) == 0.5
    assert ranking.average_precision(np.zeros(5), positives) == pytest.approx(0.4)
    assert ranking.fpr_at_tpr(np.zeros(5), positives) == 1.0

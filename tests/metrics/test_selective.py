"""Selective prediction against plain loops (with and without tied confidences)."""

import numpy as np
import pytest

from relbench import metrics
from relbench.metrics import selective
from tests.metrics.conftest import make_predictions, predictions


def _data(seed, n=200, ties=False):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.2, 1.0, n)
    if ties:
        confidence = np.round(confidence * 5) / 5
    correct = (rng.uniform(size=n) < confidence).astype(float)
    return confidence, correct


def _expected_correct_loop(confidence, correct, k):
    """Walk tie groups from the most confident; a split group counts at its mean."""
    taken = total = 0.0
    for value in sorted(set(confidence), reverse=True):
        group = correct[confidence == value]
        take = min(len(group), k - taken)
        total += take * group.mean()
        taken += take
        if taken >= k:
            break
    return total


def _aurc_loop(confidence, correct):
    risks = [1 - correct[confidence >= c].mean() for c in confidence]
    return np.mean(risks)


@pytest.mark.parametrize("seed", [0, 1])
def test_against_loops(seed, ties):
    confidence, correct = _data(seed, ties=ties)
    n = len(confidence)
    assert selective.aurc(confidence, correct) == pytest.approx(_aurc_loop(confidence, correct))
    for q in (0.1, 0.5, 0.83, 1.0):
        k = max(1, round(q * n))
        expected = _expected_correct_loop(confidence, correct, k) / k
        assert selective.accuracy_at_coverage(confidence, correct, q) == pytest.approx(expected)
    for f in (0.0, 0.05, 0.3):
        d = round(f * n)
        expected = (d + _expected_correct_loop(confidence, correct, n - d)) / n
        assert selective.oracle_collaborative_accuracy(confidence, correct, f) == pytest.approx(
            expected
        )


def test_without_ties_matches_the_sorted_definitions():
    confidence, correct = _data(3)
    order = np.argsort(-confidence)
    cumulative_risk = np.cumsum(1 - correct[order]) / np.arange(1, len(order) + 1)
    assert selective.aurc(confidence, correct) == pytest.approx(cumulative_risk.mean())
    assert selective.accuracy_at_coverage(confidence, correct, 0.25) == pytest.approx(
        correct[order[:50]].mean()
    )
    coverage, risk = selective.risk_coverage_curve(confidence, correct, num_points=4)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk == pytest.approx(cumulative_risk[[49, 99, 149, 199]])


def test_suite_masks_padding_rows():
    logits, log_probs, labels, mask = make_predictions(4, 2, 160, 5, ties=True)
    out = metrics.evaluate_arrays(
        (selective.SELECTIVE_PREDICTION,), predictions(logits, labels, mask)
    )
    keep = mask > 0
    probs = np.exp(log_probs[keep])
    confidence = probs.max(-1)
    correct = (probs.argmax(-1) == labels[keep]).astype(float)
    assert out["aurc"] == pytest.approx(_aurc_loop(confidence, correct), abs=1e-6)
    assert out["accuracy@coverage=0.5"] == pytest.approx(
        selective.accuracy_at_coverage(confidence, correct, 0.5)
    )
    assert out["accuracy@coverage=0.99"] <= 1.0


def test_perfect_ranking_has_the_smallest_aurc():
    correct = np.array([1.0, 1.0, 1.0, 0.0])
    assert selective.aurc(np.array([0.9, 0.8, 0.7, 0.6]), correct) < selective.aurc(
        np.array([0.6, 0.8, 0.7, 0.9]), correct
    )
    assert selective.oracle_collaborative_accuracy(
        np.array([0.9, 0.8, 0.7, 0.6]), correct, 0.25
    ) == pytest.approx(1.0)

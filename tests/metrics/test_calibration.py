"""Calibration metrics against plain numpy loops and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from relbench import metrics
from relbench.metrics import calibration
from tests.metrics.conftest import make_predictions, predictions

BINS = 15


def _confidence_correct(log_probs, labels):
    probs = np.exp(log_probs)
    return probs.max(-1), (probs.argmax(-1) == labels).astype(float)


def _equal_width_loop(confidence, correct):
    """(ECE, RMS-CE, MCE) with bins ((b-1)/15, b/15], written out bin by bin."""
    n = len(confidence)
    ece = rms = 0.0
    mce = 0.0
    for b in range(BINS):
        low, high = b / BINS, (b + 1) / BINS
        in_bin = (confidence > low) & (confidence <= high)
        if b == 0:
            in_bin |= confidence <= 0
        if not in_bin.any():
            continue
        gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
        ece += in_bin.sum() / n * gap
        rms += in_bin.sum() / n * gap**2
        mce = max(mce, gap)
    return ece, np.sqrt(rms), mce


def _adaptive_loop(confidence, correct):
    order = np.argsort(confidence, kind="stable")
    n = len(confidence)
    total = 0.0
    for b in range(BINS):
        members = [order[r] for r in range(n) if r * BINS // n == b]
        if members:
            total += abs(np.sum(correct[members] - confidence[members]))
    return total / n


def _classwise_loop(probs, labels):
    n, k = probs.shape
    per_class = []
    for c in range(k):
        total = 0.0
        for b in range(BINS):
            low, high = b / BINS, (b + 1) / BINS
            in_bin = (probs[:, c] > low) & (probs[:, c] <= high)
            if b == 0:
                in_bin |= probs[:, c] <= 0
            total += abs(np.sum((labels[in_bin] == c) - probs[in_bin, c]))
        per_class.append(total / n)
    return np.mean(per_class)


@pytest.mark.parametrize("members", [1, 3])
def test_suite_against_loops(members, ties):
    logits, log_probs, labels, mask = make_predictions(members, members, 200, 5, ties=ties)
    out = metrics.evaluate_arrays(metrics.IN_DISTRIBUTION, predictions(logits, labels, mask))
    keep = mask > 0
    confidence, correct = _confidence_correct(log_probs[keep], labels[keep])
    ece, rms, mce = _equal_width_loop(confidence, correct)
    assert out["ece"] == pytest.approx(ece, abs=1e-6)
    assert out["rms_calibration_error"] == pytest.approx(rms, abs=1e-6)
    assert out["mce"] == pytest.approx(mce, abs=1e-6)
    assert out["adaptive_ece"] == pytest.approx(_adaptive_loop(confidence, correct), abs=1e-6)
    assert out["classwise_ece"] == pytest.approx(
        _classwise_loop(np.exp(log_probs[keep]), labels[keep]), abs=1e-6
    )
    assert out["calibration_auc"] == pytest.approx(roc_auc_score(correct, confidence))


def test_whole_array_functions_match_the_suite():
    logits, log_probs, labels, _ = make_predictions(7, 1, 150, 4)
    probs = np.exp(log_probs)
    confidence, correct = _confidence_correct(log_probs, labels)
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(
        _equal_width_loop(confidence, correct)[0], abs=1e-6
    )
    assert metrics.classwise_ece(probs, labels) == pytest.approx(
        _classwise_loop(probs, labels), abs=1e-6
    )
    assert metrics.adaptive_ece(confidence, correct) == pytest.approx(
        _adaptive_loop(confidence, correct)
    )


def test_bin_edges_are_right_closed():
    # Confidence exactly 1/15 is in bin 1, just above it in bin 2; 1.0 in the last bin.
    bins = calibration.calibration_bins(np.array([1 / 15, 1 / 15 + 1e-4, 1.0, 0.0]), BINS)
    assert bins.tolist() == [0, 1, 14, 0]


def test_reliability_diagram_data():
    confidence = np.array([0.95, 0.95, 0.55, 0.55, 0.55])
    correct = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    stats = calibration.binned_statistics(confidence, correct, np.ones(5), BINS)
    curve = calibration.reliability_diagram({k: np.asarray(v, float) for k, v in stats.items()})
    diagram = curve["reliability"]
    assert diagram["count"][14] == 2 and diagram["count"][8] == 3
    assert diagram["accuracy"][14] == pytest.approx(0.5)
    assert diagram["accuracy"][8] == pytest.approx(2 / 3)
    assert diagram["confidence"][8] == pytest.approx(0.55)
    assert np.isnan(diagram["accuracy"][0])
    result = calibration.binned_result({k: np.asarray(v, float) for k, v in stats.items()})
    assert result["ece"] == pytest.approx(2 / 5 * 0.45 + 3 / 5 * abs(2 / 3 - 0.55))
    assert result["mce"] == pytest.approx(0.45)


def test_single_class_present():
    logits, log_probs, _, mask = make_predictions(3, 2, 120, 4)
    labels = np.full(120, 2, np.int32)
    out = metrics.evaluate_arrays(metrics.IN_DISTRIBUTION, predictions(logits, labels, mask))
    keep = mask > 0
    confidence, correct = _confidence_correct(log_probs[keep], labels[keep])
    assert out["ece"] == pytest.approx(_equal_width_loop(confidence, correct)[0], abs=1e-6)
    assert out["classwise_ece"] == pytest.approx(
        _classwise_loop(np.exp(log_probs[keep]), labels[keep]), abs=1e-6
    )


def test_calibration_auc_is_nan_when_every_prediction_is_right():
    confidence = np.array([0.9, 0.8, 0.7])
    assert np.isnan(metrics.calibration_auc(confidence, np.ones(3)))

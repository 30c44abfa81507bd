"""Proper scores and the Brier decomposition against scikit-learn and numpy loops."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from relbench import metrics
from tests.metrics.conftest import make_predictions, predictions


@pytest.mark.parametrize("members", [1, 4])
def test_proper_scores_against_sklearn(members, ties):
    logits, log_probs, labels, mask = make_predictions(members + 10, members, 300, 6, ties=ties)
    out = metrics.evaluate_arrays(metrics.IN_DISTRIBUTION, predictions(logits, labels, mask))
    keep = mask > 0
    probs, y = np.exp(log_probs[keep]), labels[keep]
    probs /= probs.sum(-1, keepdims=True)  # float32 rounding: sklearn checks the sums
    assert out["accuracy"] == pytest.approx(accuracy_score(y, probs.argmax(-1)))
    assert out["nll"] == pytest.approx(log_loss(y, probs, labels=range(6)), rel=1e-5)
    assert out["brier"] == pytest.approx(
        brier_score_loss(y, probs, labels=range(6), scale_by_half=False), rel=1e-5
    )


def test_single_class_present_against_sklearn():
    _, log_probs, _, _ = make_predictions(5, 1, 100, 3)
    labels = np.zeros(100, np.int32)
    probs = np.exp(log_probs)
    probs /= probs.sum(-1, keepdims=True)  # float32 rounding: sklearn checks the sums
    out = metrics.proper_scores(log_probs, labels)
    assert out["nll"] == pytest.approx(log_loss(labels, probs, labels=range(3)), rel=1e-5)
    assert out["brier"] == pytest.approx(
        brier_score_loss(labels, probs, labels=range(3), scale_by_half=False), rel=1e-5
    )
    assert metrics.negative_log_likelihood(log_probs, labels) == pytest.approx(out["nll"])


def _decomposition_loop(probs, labels):
    n, k = probs.shape
    one_hot = np.eye(k)[labels]
    base = one_hot.mean(0)
    predicted = probs.argmax(-1)
    reliability = resolution = 0.0
    for j in range(k):
        group = predicted == j
        if not group.any():
            continue
        q = one_hot[group].mean(0)
        resolution += group.sum() / n * np.sum((q - base) ** 2)
        reliability += np.sum((probs[group] - q) ** 2) / n
    return reliability, resolution, np.sum(base * (1 - base))


def test_brier_decomposition_against_loop():
    _, log_probs, labels, mask = make_predictions(8, 3, 250, 5)
    keep = mask > 0
    probs = np.exp(log_probs)
    out = metrics.brier_decomposition(probs, labels, mask)
    rel, res, unc = _decomposition_loop(probs[keep], labels[keep])
    assert out["brier_reliability"] == pytest.approx(rel, rel=1e-5)
    assert out["brier_resolution"] == pytest.approx(res, rel=1e-5)
    assert out["brier_uncertainty"] == pytest.approx(unc, rel=1e-6)


def test_brier_decomposition_is_exact_for_constant_forecasts_per_group():
    rng = np.random.default_rng(0)
    forecasts = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    predicted = rng.integers(0, 3, 400)
    probs = forecasts[predicted]
    labels = rng.integers(0, 3, 400)
    out = metrics.brier_decomposition(probs, labels)
    brier = np.mean(np.sum((probs - np.eye(3)[labels]) ** 2, -1))
    total = out["brier_reliability"] - out["brier_resolution"] + out["brier_uncertainty"]
    assert total == pytest.approx(brier, rel=1e-5)


def test_eval_suite_rejects_unknown_task():
    with pytest.raises(ValueError, match="segmentation"):
        metrics.eval_suite("segmentation", False)

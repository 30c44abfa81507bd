"""OSCR (Dhamija et al. 2018) against hand-computed curves, a brute-force threshold sweep,
and through the evaluation protocol."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import metrics as metrics_lib
from relbench.metrics import open_set
from relbench.train import evaluation


def test_oscr_equals_the_hand_computed_area():
    # Decreasing confidence: 0.9 known correct, 0.85 unknown, 0.8 known wrong, 0.7 known
    # correct, 0.65 unknown, 0.6 known correct. The curve (FPR, CCR): (0, 0), (0, 1/4),
    # (1/2, 1/4), (1/2, 1/4), (1/2, 1/2), (1, 1/2), (1, 3/4); area 1/2*1/4 + 1/2*1/2.
    known, correct, unknown = [0.9, 0.8, 0.7, 0.6], [1, 0, 1, 1], [0.85, 0.65]
    fpr, ccr = open_set.oscr_curve(known, correct, unknown)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(ccr, [0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.75])
    assert open_set.oscr(known, correct, unknown) == pytest.approx(0.375, abs=1e-12)


def test_tied_known_and_unknown_confidences_join_by_a_straight_line():
    # 0.9 known correct -> (0, 1/2); 0.5 known correct tied with an unknown -> (1/2, 1);
    # 0.1 unknown -> (1, 1): area 1/2 * (1/2 + 1) / 2 + 1/2 * 1 = 0.875.
    assert open_set.oscr([0.9, 0.5], [1, 1], [0.5, 0.1]) == pytest.approx(0.875, abs=1e-12)


def _brute_force_oscr(known, correct, unknown):
    thresholds = np.r_[np.inf, np.unique(np.r_[known, unknown])[::-1]]
    ccr = [np.mean((known >= t) & (correct > 0)) for t in thresholds]
    fpr = [np.mean(unknown >= t) for t in thresholds]
    return np.trapezoid(ccr, fpr) if hasattr(np, "trapezoid") else np.trapz(ccr, fpr)


@pytest.mark.parametrize("seed", [0, 1])
def test_oscr_matches_a_threshold_sweep_and_its_bounds(seed):
    rng = np.random.default_rng(seed)
    known = np.round(rng.uniform(size=50), 1)  # rounded: many ties
    correct = (rng.uniform(size=50) < 0.7).astype(float)
    unknown = np.round(rng.uniform(size=30) * 0.8, 1)
    area = open_set.oscr(known, correct, unknown)
    assert area == pytest.approx(_brute_force_oscr(known, correct, unknown), abs=1e-12)
    assert 0 <= area <= correct.mean()
    # A confidence that puts every unknown below every known example: area = accuracy.
    assert open_set.oscr(known + 2, correct, unknown) == pytest.approx(correct.mean())


def test_open_set_results_use_the_negated_uncertainty_scores():
    known = {"max_prob": -np.array([0.9, 0.8, 0.7, 0.6])}
    unknown = {"max_prob": -np.array([0.85, 0.65])}
    out = open_set.open_set_results(known, np.array([1.0, 0, 1, 1]), unknown)
    assert out["oscr"] == out["oscr/max_prob"] == pytest.approx(0.375)
    assert out["closed_set_accuracy"] == 0.75


def test_the_evaluation_protocol_reports_oscr_for_every_ood_set():
    rng = np.random.default_rng(3)
    evaluated = {}
    for name, n, is_ood in (("test", 30, False), ("ood", 20, True)):
        logits = jnp.asarray(rng.normal(size=(1, n, 4)).astype(np.float32) * (1 if is_ood else 3))
        labels = np.full(n, -1) if is_ood else rng.integers(0, 4, n)
        p = metrics_lib.Predictions(
            logits=logits,
            log_probs=metrics_lib.predictive_log_probs(logits),
            labels=jnp.asarray(labels, jnp.int32),
            mask=jnp.ones(n),
        )
        suite = metrics_lib.eval_suite("classification", is_ood)
        batch = jax.jit(metrics_lib.batch_statistics, static_argnums=0)(suite, p)
        stats = metrics_lib.add_statistics(suite, None, jax.device_get(batch))
        evaluated[name] = evaluation.SetTotals(is_ood, suite, stats)
        probs = np.exp(np.asarray(p.log_probs, np.float64))
        evaluated[name + "/arrays"] = (probs.max(1), probs.argmax(1) == labels)
    results, curves = evaluation.summarize(
        {k: v for k, v in evaluated.items() if "/" not in k}, evaluation.EvaluationSettings()
    )
    (known, correct), (unknown, _) = evaluated["test/arrays"], evaluated["ood/arrays"]
    assert results["ood"]["oscr"] == pytest.approx(open_set.oscr(known, correct, unknown), abs=1e-6)
    assert results["ood"]["closed_set_accuracy"] == pytest.approx(results["test"]["accuracy"])
    assert len(curves["ood"]["oscr"]["ccr"]) == open_set.CURVE_POINTS
    assert "oscr" not in results["test"]

"""Conformal steps: coverage over 50 random calibration/test splits of an exchangeable
set within Vovk's bounds, RAPS sets no larger than APS, each score against a
hand-computed example, Mondrian coverage per class, and the regression intervals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import posthoc
from relbench.errors import UsageError
from relbench.metrics import conformal as conformal_metrics
from relbench.metrics.streaming import Predictions, evaluate_arrays
from relbench.posthoc import conformal_classification as cc

PROBS = np.array([[0.5, 0.3, 0.15, 0.05]], np.float32)


def test_each_score_against_a_hand_computed_example():
    # Ranks of the classes: 1, 2, 3, 4.
    np.testing.assert_allclose(cc.lac_scores(PROBS), [[0.5, 0.7, 0.85, 0.95]], rtol=1e-6)
    np.testing.assert_allclose(cc.aps_scores(PROBS), [[0.5, 0.8, 0.95, 1.0]], rtol=1e-6)
    # RAPS, penalty 0.1 beyond k_reg = 1: + 0, 0.1, 0.2, 0.3.
    np.testing.assert_allclose(cc.raps_scores(PROBS, 0.1, 1), [[0.5, 0.9, 1.15, 1.3]], rtol=1e-6)
    # SAPS, weight 0.2: p_max for the top class, p_max + 0.2 (rank - 1) below it.
    np.testing.assert_allclose(cc.saps_scores(PROBS, 0.2), [[0.5, 0.7, 0.9, 1.1]], rtol=1e-6)
    # The quantile: ceil((n + 1) 0.8) = ceil(4.8) = 5th smallest of 5; coverage 0.5 of
    # n = 4 asks for rank ceil(2.5) = 3; coverage 0.9 of n = 4 for rank 5 > n: +inf.
    scores = jnp.array([0.3, 0.1, 0.5, 0.2, 0.4])
    assert float(cc.conformal_quantile(scores, jnp.ones(5, bool), 0.8)) == pytest.approx(0.5)
    four = jnp.array([True, True, True, True, False])
    assert float(cc.conformal_quantile(scores, four, 0.5)) == pytest.approx(0.3)
    assert np.isinf(float(cc.conformal_quantile(scores, four, 0.9)))


def exchangeable_set(seed=0, n=4000, k=10):
    """A noisy classifier's logits and labels drawn from the same distribution."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = 2.0 * np.eye(k)[labels] + rng.normal(size=(n, k)) * 1.2
    return logits[None].astype(np.float32), labels


def jitted(step):
    return posthoc.PosthocStep(fit=jax.jit(step.fit), apply=jax.jit(step.apply))


def coverage_and_size(step, logits, labels, calibration, test):
    fitted = step.fit((logits[:, calibration], {}), {"label": labels[calibration]})
    _, extras = step.apply((logits[:, test], {}), fitted)
    sets = np.asarray(extras["prediction_set"][0]) > 0.5
    return sets[np.arange(len(test)), labels[test]].mean(), sets.sum(-1).mean()


@pytest.mark.parametrize(
    "name", ["conformal_lac", "conformal_aps", "conformal_raps", "conformal_saps"]
)
def test_coverage_over_50_random_splits_is_within_vovks_bounds(name):
    logits, labels = exchangeable_set()
    n_cal, alpha = 500, 0.1
    step = jitted(posthoc.make(name, coverage=1 - alpha))
    rng = np.random.default_rng(1)
    coverages, sizes = [], []
    for _ in range(50):
        order = rng.permutation(len(labels))
        cov, size = coverage_and_size(step, logits, labels, order[:n_cal], order[n_cal:])
        coverages.append(cov)
        sizes.append(size)
    mean = float(np.mean(coverages))
    # The bounds hold in expectation; the mean of 50 splits of 3500 test points has a
    # standard error near 0.002, hence the slack.
    assert mean >= 1 - alpha - 0.004, mean
    assert mean <= 1 - alpha + 1 / (n_cal + 1) + 0.004, mean
    assert 1.0 < np.mean(sizes) < 10.0  # sets that say something


def test_raps_sets_are_no_larger_than_aps_on_average():
    logits, labels = exchangeable_set(seed=2, k=20)
    calibration, test = np.arange(1000), np.arange(1000, 4000)
    _, aps = coverage_and_size(
        jitted(posthoc.make("conformal_aps")), logits, labels, calibration, test
    )
    raps = jitted(posthoc.make("conformal_raps", penalty=0.05, k_reg=2))
    _, raps_size = coverage_and_size(raps, logits, labels, calibration, test)
    assert raps_size <= aps, (raps_size, aps)


def test_mondrian_thresholds_cover_every_class():
    # Class 0 is easy, class 1 hard: one marginal threshold undercovers class 1.
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 6000)
    noise = np.where(labels == 1, 3.0, 0.5)[:, None]
    logits = (2.0 * np.eye(3)[labels] + rng.normal(size=(6000, 3)) * noise)[None].astype(np.float32)
    calibration, test = np.arange(3000), np.arange(3000, 6000)
    per_class = {}
    for conditional in (False, True):
        step = jitted(posthoc.make("conformal_lac", coverage=0.9, class_conditional=conditional))
        fitted = step.fit((logits[:, calibration], {}), {"label": labels[calibration]})
        _, extras = step.apply((logits[:, test], {}), fitted)
        metrics = evaluate_arrays(
            (conformal_metrics.PREDICTION_SETS,),
            Predictions(
                logits=jnp.asarray(logits[:, test]),
                log_probs=jnp.zeros((len(test), 3)),
                labels=jnp.asarray(labels[test]),
                mask=jnp.ones(len(test)),
                extras=extras,
            ),
        )
        sets = np.asarray(extras["prediction_set"][0]) > 0.5
        covered = sets[np.arange(len(test)), labels[test]]
        per_class[conditional] = [covered[labels[test] == c].mean() for c in range(3)]
        assert metrics["worst_class_coverage"] == pytest.approx(min(per_class[conditional]))
        assert metrics["coverage"] == pytest.approx(covered.mean())
        assert metrics["mean_set_size"] == pytest.approx(sets.sum(-1).mean())
        sizes = sets.sum(-1)
        assert metrics["coverage@size=1"] == pytest.approx(covered[sizes == 1].mean())
    assert min(per_class[False]) < 0.85  # the marginal threshold fails the hard class
    assert min(per_class[True]) > 0.87  # each class's own threshold does not


def test_regression_intervals_cover_and_normalized_ones_adapt():
    """Heteroscedastic data whose Gaussian head knows the noise level: both intervals
    cover at 1 - alpha; the normalized ones are narrower on average (lower Winkler)."""
    rng = np.random.default_rng(4)
    n = 8000
    std = rng.uniform(0.1, 2.0, n)
    y = rng.normal(size=n) * std
    means = np.zeros((1, n, 1), np.float32)
    extras = {"variance": (std**2)[None, :, None].astype(np.float32)}
    half = n // 2
    results = {}
    for name in ("conformal_residual", "conformal_normalized"):
        step = jitted(posthoc.make(name, coverage=0.9))
        cal = (means[:, :half], {"variance": extras["variance"][:, :half]})
        fitted = step.fit(cal, {"label": y[:half, None].astype(np.float32)})
        test = (means[:, half:], {"variance": extras["variance"][:, half:]})
        _, out = step.apply(test, fitted)
        results[name] = evaluate_arrays(
            (conformal_metrics.PREDICTION_INTERVALS,),
            Predictions(
                logits=jnp.asarray(means[:, half:]),
                log_probs=jnp.zeros((n - half, 1)),
                labels=jnp.asarray(y[half:, None], jnp.float32),
                mask=jnp.ones(n - half),
                extras=out,
            ),
        )
        lower, upper = (
            np.asarray(out["interval_lower"][0, :, 0]),
            np.asarray(out["interval_upper"][0, :, 0]),
        )
        yt = y[half:]
        winkler = (upper - lower) + 20 * (np.maximum(lower - yt, 0) + np.maximum(yt - upper, 0))
        assert results[name]["winkler_score"] == pytest.approx(winkler.mean(), rel=1e-5)
        assert abs(results[name]["interval_coverage"] - 0.9) < 0.02
    normalized, residual = results["conformal_normalized"], results["conformal_residual"]
    assert normalized["interval_width"] < residual["interval_width"]
    assert normalized["winkler_score"] < residual["winkler_score"]


def quantile_outputs(lower, upper):
    """A quantile head's outputs ``[M, N, 1]`` (members' means zero)."""
    lower, upper = (np.asarray(q, np.float32).reshape(-1, len(q[0]), 1) for q in (lower, upper))
    return (np.zeros_like(lower), {"quantile_lower": lower, "quantile_upper": upper})


def test_cqr_against_a_hand_computed_example():
    # Two members whose mean quantiles are [0, 1]; E = max(q_lo - y, y - q_hi) for
    # y = 0.5, 1.3, -0.2, 2.0 is -0.5, 0.3, 0.2, 1.0; coverage 0.6 of n = 4 takes the
    # ceil(5 * 0.6) = 3rd smallest, 0.3: the interval [0, 1] widens to [-0.3, 1.3].
    cal = quantile_outputs([[-1.0] * 4, [1.0] * 4], [[0.5] * 4, [1.5] * 4])
    step = jitted(posthoc.make("conformal_cqr", coverage=0.6))
    fitted = step.fit(cal, {"label": np.array([[0.5], [1.3], [-0.2], [2.0]], np.float32)})
    assert float(fitted["threshold"][0]) == pytest.approx(0.3)
    _, out = step.apply(quantile_outputs([[2.0], [4.0]], [[3.0], [5.0]]), fitted)
    np.testing.assert_allclose(out["interval_lower"][0, :, 0], [3.0 - 0.3], rtol=1e-6)
    np.testing.assert_allclose(out["interval_upper"][0, :, 0], [4.0 + 0.3], rtol=1e-6)
    # Intervals too wide shrink: a negative threshold.
    fitted = step.fit(cal, {"label": np.full((4, 1), 0.5, np.float32)})
    assert float(fitted["threshold"][0]) == pytest.approx(-0.5)


def test_cqr_without_a_quantile_head_names_the_fix():
    step = posthoc.make("conformal_cqr")
    outputs = (jnp.zeros((1, 4, 1)), {"variance": jnp.ones((1, 4, 1))})
    with pytest.raises(UsageError, match="config.likelihood.quantile_coverage"):
        step.fit(outputs, {"label": jnp.zeros((4, 1))})


def test_cqr_coverage_over_50_random_splits_is_within_vovks_bounds():
    """Heteroscedastic data and a quantile head that is too narrow (its quantiles cover
    half the mass): CQR covers at 1 - alpha, its widths follow the noise."""
    rng = np.random.default_rng(5)
    n, n_cal, alpha = 4000, 500, 0.1
    std = rng.uniform(0.1, 2.0, n)
    y = (rng.normal(size=n) * std).astype(np.float32)
    lower, upper = -0.67 * std[None], 0.67 * std[None]
    step = jitted(posthoc.make("conformal_cqr", coverage=1 - alpha))
    coverages, width_ratio = [], []
    for _ in range(50):
        order = rng.permutation(n)
        cal, test = order[:n_cal], order[n_cal:]
        fitted = step.fit(quantile_outputs(lower[:, cal], upper[:, cal]), {"label": y[cal, None]})
        _, out = step.apply(quantile_outputs(lower[:, test], upper[:, test]), fitted)
        low, high = (np.asarray(out[k][0, :, 0]) for k in ("interval_lower", "interval_upper"))
        coverages.append(np.mean((low <= y[test]) & (y[test] <= high)))
        width_ratio.append(np.corrcoef(high - low, std[test])[0, 1])
    mean = float(np.mean(coverages))
    assert 1 - alpha - 0.004 <= mean <= 1 - alpha + 1 / (n_cal + 1) + 0.004, mean
    assert min(width_ratio) > 0.99  # widths proportional to the noise, plus a constant

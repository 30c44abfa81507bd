"""Regression metrics against closed forms, numerical integrals and scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from relbench import metrics as metrics_lib
from relbench.metrics.regression import (
    COVERAGE_LEVELS,
    gaussian_crps,
    mixture_crps,
    mixture_log_prob,
    mixture_moments,
)


def _mixture(seed, members, batch, outputs=1):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(members, batch, outputs))
    variances = rng.uniform(0.2, 2.0, size=(members, batch, outputs))
    y = rng.normal(size=(batch, outputs)) * 1.5
    return means, variances, y


def _mixture_cdf(x, means, variances):
    return np.mean(stats.norm.cdf(x, means, np.sqrt(variances)))


def _crps_by_integration(y, means, variances):
    """CRPS = int (F(x) - 1[x >= y])^2 dx, split at y (numerical reference)."""
    low = float(np.min(means - 12 * np.sqrt(variances)))
    high = float(np.max(means + 12 * np.sqrt(variances)))
    below = integrate.quad(lambda x: _mixture_cdf(x, means, variances) ** 2, low, y)[0]
    above = integrate.quad(lambda x: (1 - _mixture_cdf(x, means, variances)) ** 2, y, high)[0]
    return below + above


def test_gaussian_crps_matches_its_closed_form_and_the_integral():
    means, variances, y = _mixture(0, 1, 6)
    crps = np.asarray(jax.jit(gaussian_crps)(y, means[0], variances[0]))[:, 0]
    z = (y[:, 0] - means[0, :, 0]) / np.sqrt(variances[0, :, 0])
    closed = np.sqrt(variances[0, :, 0]) * (
        z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi)
    )
    np.testing.assert_allclose(crps, closed, rtol=1e-5, atol=1e-6)
    for i in range(6):
        integral = _crps_by_integration(y[i, 0], means[:, i, 0], variances[:, i, 0])
        np.testing.assert_allclose(crps[i], integral, rtol=1e-4, atol=1e-6)


def test_mixture_crps_matches_the_integral():
    means, variances, y = _mixture(1, 4, 5)
    crps = np.asarray(jax.jit(mixture_crps)(y, means, variances))[:, 0]
    for i in range(5):
        integral = _crps_by_integration(y[i, 0], means[:, i, 0], variances[:, i, 0])
        np.testing.assert_allclose(crps[i], integral, rtol=1e-4, atol=1e-6)
    # Two copies of one member are that member: the pairwise term reduces correctly.
    twice = jax.jit(mixture_crps)(y, np.repeat(means[:1], 2, 0), np.repeat(variances[:1], 2, 0))
    once = jax.jit(gaussian_crps)(y, means[0], variances[0])
    np.testing.assert_allclose(twice, once, rtol=1e-5, atol=1e-6)


def test_mixture_log_prob_and_moments_match_scipy():
    means, variances, y = _mixture(2, 3, 7, outputs=2)
    member = stats.norm.logpdf(y[None], means, np.sqrt(variances)).sum(-1)  # [M, B]
    expected = special.logsumexp(member, axis=0) - np.log(3)
    np.testing.assert_allclose(jax.jit(mixture_log_prob)(y, means, variances), expected, 1e-5)
    mean, variance = jax.jit(mixture_moments)(means, variances)
    np.testing.assert_allclose(mean, means.mean(0), rtol=1e-5, atol=1e-6)
    second = np.mean(variances + means**2, axis=0)
    np.testing.assert_allclose(variance, second - means.mean(0) ** 2, rtol=1e-5, atol=1e-6)


def _evaluate(means, variances, y, batch_size=None, task="regression", is_ood=False):
    """The loop's path: statistics per batch, float64 totals, results."""
    suite = metrics_lib.eval_suite(task, is_ood)
    n = y.shape[0]
    batch_size = batch_size or n
    step = jax.jit(
        lambda m, v, t, mask: metrics_lib.batch_statistics(
            suite,
            metrics_lib.Predictions(
                logits=m,
                log_probs=jnp.zeros(m.shape[1:]),
                labels=t,
                mask=mask,
                extras={"variance": v},
            ),
        )
    )
    totals = None
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size) % n
        mask = (np.arange(start, start + batch_size) < n).astype(np.float32)
        stats_ = step(means[:, rows], variances[:, rows], y[rows], mask)
        totals = metrics_lib.add_statistics(suite, totals, jax.device_get(stats_))
    return metrics_lib.results(suite, totals)


def test_regression_suite_matches_references_and_is_batch_invariant():
    means, variances, y = _mixture(3, 3, 50, outputs=2)
    means, variances, y = (a.astype(np.float32) for a in (means, variances, y))
    whole = _evaluate(means, variances, y)
    batched = _evaluate(means, variances, y, batch_size=16)  # 50 = 3 * 16 + 2: padding
    for name in whole:
        np.testing.assert_allclose(batched[name], whole[name], rtol=1e-5, atol=1e-7)
    m64, v64, y64 = (a.astype(np.float64) for a in (means, variances, y))
    member = stats.norm.logpdf(y64[None], m64, np.sqrt(v64)).sum(-1)
    nll = -np.mean(special.logsumexp(member, axis=0) - np.log(3))
    np.testing.assert_allclose(whole["nll"], nll, rtol=1e-5)
    np.testing.assert_allclose(whole["rmse"], np.sqrt(np.mean((y64 - m64.mean(0)) ** 2)), 1e-5)
    crps = [
        _crps_by_integration(y64[i, o], m64[:, i, o], v64[:, i, o])
        for i in range(50)
        for o in range(2)
    ]
    np.testing.assert_allclose(whole["crps"], np.mean(crps), rtol=1e-4)


def _central_interval(level, means, variances):
    """The mixture's central interval by root finding on its CDF (numpy reference)."""
    lower_q, upper_q = (1 - level) / 2, (1 + level) / 2
    low, high = np.min(means) - 20, np.max(means) + 20
    cdf = lambda x, q: _mixture_cdf(x, means, variances) - q  # noqa: E731
    return optimize.brentq(cdf, low, high, args=(lower_q,)), optimize.brentq(
        cdf, low, high, args=(upper_q,)
    )


@pytest.mark.parametrize("members", [1, 3])
def test_coverage_matches_intervals_from_quantiles(members):
    means, variances, y = _mixture(4, members, 60)
    results = _evaluate(means, variances, y)
    for level in (0.5, 0.9, 0.95):
        inside = 0
        for i in range(60):
            low, high = _central_interval(level, means[:, i, 0], variances[:, i, 0])
            inside += low <= y[i, 0] <= high
        assert results[f"coverage_{round(100 * level)}"] == pytest.approx(inside / 60, abs=1e-12)


def test_coverage_on_synthetic_data_is_the_nominal_level_or_the_misspecified_one():
    rng = np.random.default_rng(5)
    n = 20_000
    mean = rng.normal(size=(1, n, 1))
    std = rng.uniform(0.5, 2.0, size=(1, n, 1))
    y = (mean + std * rng.normal(size=(1, n, 1)))[0]
    calibrated = _evaluate(mean, std**2, y)
    too_wide = _evaluate(mean, (2 * std) ** 2, y)
    levels = np.asarray(COVERAGE_LEVELS)
    for level in (0.5, 0.9, 0.95):
        key = f"coverage_{round(100 * level)}"
        binomial_sd = np.sqrt(level * (1 - level) / n)
        assert abs(calibrated[key] - level) < 4 * binomial_sd
        # A predictive std twice the truth covers P(|Z| <= 2 z_level).
        wide = 2 * stats.norm.cdf(2 * stats.norm.ppf((1 + level) / 2)) - 1
        assert abs(too_wide[key] - wide) < 4 * np.sqrt(wide * (1 - wide) / n)
    assert calibrated["interval_calibration_error"] < 4 * np.sqrt(0.25 / n)
    expected_gap = np.mean(
        np.abs(2 * stats.norm.cdf(2 * stats.norm.ppf((1 + levels) / 2)) - 1 - levels)
    )
    assert too_wide["interval_calibration_error"] == pytest.approx(expected_gap, abs=0.01)


def test_ood_suite_reports_the_mixture_std():
    means, variances, y = _mixture(6, 2, 10)
    result = _evaluate(means, variances, y, is_ood=True)
    _, variance = mixture_moments(means, variances)
    assert result == {"mean_predictive_std": pytest.approx(float(np.mean(np.sqrt(variance))))}


def test_missing_variance_is_a_usage_error():
    from relbench.errors import UsageError
    from relbench.metrics.regression import REGRESSION_SCORES

    p = metrics_lib.Predictions(
        logits=jnp.zeros((1, 2, 1)),
        log_probs=jnp.zeros((2, 1)),
        labels=jnp.zeros((2, 1)),
        mask=jnp.ones(2),
    )
    with pytest.raises(UsageError, match="GaussianHead"):
        REGRESSION_SCORES.statistics(p)

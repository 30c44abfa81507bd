"""Calibration maps against independent references: scikit-learn's IsotonicRegression,
a grid-searched Platt fit, scipy L-BFGS fits of matrix/vector/Dirichlet scaling in
float64 numpy, and a numpy histogram binning; member vs ensemble fitting."""

import jax
import numpy as np
import pytest
from scipy import optimize, special
from sklearn.isotonic import IsotonicRegression

from relbench import posthoc
from relbench.posthoc import calibration_maps


def synthetic(seed, members=1, n=600, k=4, sharpness=3.0):
    """Miscalibrated logits: overconfident and biased towards class 0."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    signal = np.eye(k)[labels] * 1.2 + rng.normal(size=(n, k))
    logits = sharpness * (signal[None] + 0.3 * rng.normal(size=(members, n, k)))
    logits[..., 0] += 1.0
    return logits.astype(np.float32), labels


def fitted_log_probs(name, logits, labels, **hparams):
    step = posthoc.make(name, **hparams)
    params = jax.jit(step.fit)((logits, {}), {"label": labels})
    out, _ = jax.jit(step.apply)((logits, {}), params)
    return np.asarray(special.log_softmax(np.asarray(out, np.float64), axis=-1)), params


def scipy_linear_map(inputs, labels, diagonal, off_diagonal=0.0, bias=0.0):
    """The penalized NLL of softmax(W x + b) minimized by scipy's L-BFGS-B in float64,
    with the analytic gradient; returns the calibrated log probabilities."""
    n, k = inputs.shape
    y = np.eye(k)[labels]

    def unpack(theta):
        w = np.diag(theta[:k]) if diagonal else theta[: k * k].reshape(k, k)
        return w, theta[-k:]

    def objective(theta):
        w, b = unpack(theta)
        log_p = special.log_softmax(inputs @ w.T + b, axis=-1)
        off = w - np.diag(np.diag(w))
        value = -np.mean(np.sum(y * log_p, -1)) + bias * np.mean(b**2)
        value += off_diagonal * np.sum(off**2) / (k * (k - 1))
        g = (np.exp(log_p) - y) / n  # [N, K]
        gw = g.T @ inputs + 2 * off_diagonal * off / (k * (k - 1))
        gb = g.sum(0) + 2 * bias * b / k
        return value, np.r_[np.diag(gw) if diagonal else gw.ravel(), gb]

    init = np.r_[np.ones(k) if diagonal else np.eye(k).ravel(), np.zeros(k)]
    theta = optimize.minimize(objective, init, jac=True, method="L-BFGS-B", tol=1e-12).x
    w, b = unpack(theta)
    return special.log_softmax(inputs @ w.T + b, axis=-1)


@pytest.mark.parametrize(
    "name, diagonal, on_log_probs",
    [
        ("vector_scaling", True, False),
        ("matrix_scaling", False, False),
        ("dirichlet_calibration", False, True),
    ],
)
def test_linear_maps_equal_a_scipy_fit(name, diagonal, on_log_probs):
    logits, labels = synthetic(0)
    got, _ = fitted_log_probs(name, logits, labels)
    inputs = logits[0].astype(np.float64)
    if on_log_probs:
        inputs = special.log_softmax(inputs, axis=-1)
    penalty = {} if diagonal else {"off_diagonal": 1e-2, "bias": 1e-2}
    want = scipy_linear_map(inputs, labels, diagonal, **penalty)
    np.testing.assert_allclose(np.exp(got[0]), np.exp(want), atol=2e-4)
    before = -np.mean(special.log_softmax(inputs, -1)[np.arange(len(labels)), labels])
    after = -np.mean(got[0][np.arange(len(labels)), labels])
    assert after < before - 0.05  # the data are miscalibrated and the map fixes it


def numpy_predictive(logits):
    return special.softmax(logits.astype(np.float64), axis=-1).mean(0)


def renormalized(probs):
    probs = np.maximum(probs, calibration_maps.PROBABILITY_FLOOR)
    return probs / probs.sum(-1, keepdims=True)


@pytest.mark.parametrize("level", ["ensemble", "member"])
def test_isotonic_equals_scikit_learn_per_class(level):
    logits, labels = synthetic(1, members=2, n=400)
    k = logits.shape[-1]
    got, _ = fitted_log_probs("isotonic", logits, labels, level=level)
    if level == "ensemble":
        probs, targets = numpy_predictive(logits)[None], labels
    else:
        probs, targets = special.softmax(logits.astype(np.float64), axis=-1), labels
    flat = probs.reshape(-1, k)
    pooled_targets = np.tile(targets, len(probs))
    want = np.stack(
        [
            IsotonicRegression(out_of_bounds="clip")
            .fit(flat[:, c], pooled_targets == c)
            .predict(flat[:, c])
            for c in range(k)
        ],
        axis=-1,
    )
    want = renormalized(want).reshape(probs.shape)
    np.testing.assert_allclose(np.exp(got), want, atol=2e-5)
    # Between the fitted points it interpolates as scikit-learn does.
    fresh, _ = synthetic(2, members=2, n=50)
    step = posthoc.make("isotonic", level=level)
    params = jax.jit(step.fit)((logits, {}), {"label": labels})
    out, _ = jax.jit(step.apply)((fresh, {}), params)
    fresh_probs = (
        numpy_predictive(fresh)[None] if level == "ensemble" else special.softmax(fresh, -1)
    )
    iso = [
        IsotonicRegression(out_of_bounds="clip").fit(flat[:, c], pooled_targets == c)
        for c in range(k)
    ]
    want = np.stack([iso[c].predict(fresh_probs.reshape(-1, k)[:, c]) for c in range(k)], -1)
    np.testing.assert_allclose(
        special.softmax(np.asarray(out, np.float64), -1),
        renormalized(want).reshape(fresh_probs.shape),
        atol=2e-5,
    )


def test_pool_adjacent_violators_pools_tied_scores_as_scikit_learn_does():
    x = np.array([0.1, 0.2, 0.2, 0.2, 0.5, 0.5, 0.7, 0.9], np.float32)
    y = np.array([0, 1, 0, 0, 1, 0, 0, 1], np.float32)
    xs, fitted = calibration_maps.pool_adjacent_violators(x, y)
    want = IsotonicRegression().fit(x, y).predict(np.asarray(xs))
    np.testing.assert_allclose(fitted, want, atol=1e-6)


def test_histogram_binning_equals_numpy_bin_frequencies():
    logits, labels = synthetic(3, n=500)
    got, params = fitted_log_probs("histogram_binning", logits, labels, num_bins=10)
    probs = numpy_predictive(logits)
    bins = np.clip(np.floor(probs * 10).astype(int), 0, 9)
    want = np.empty_like(probs)
    for c in range(probs.shape[-1]):
        for b in range(10):
            inside = bins[:, c] == b
            value = np.mean(labels[inside] == c) if inside.any() else (b + 0.5) / 10
            want[inside, c] = value
            assert params["bin_values"][c, b] == pytest.approx(value, abs=1e-6)
    np.testing.assert_allclose(np.exp(got[0]), renormalized(want), atol=1e-5)


def platt_grid_search(scores, targets):
    """(a, b) on a 41 x 41 grid refined five times around its best point (a final
    resolution near 1e-5): the reference."""

    def nll(a, b):
        z = a[..., None] * scores + b[..., None]
        return np.mean(np.logaddexp(0, z) - targets * z, axis=-1)

    center, span = np.array([1.0, 0.0]), np.array([3.0, 3.0])
    for _ in range(6):  # convex in (a, b): each round zooms in on the best point
        a = np.linspace(center[0] - span[0], center[0] + span[0], 41)
        b = np.linspace(center[1] - span[1], center[1] + span[1], 41)
        grid = nll(a[:, None], b[None, :])
        i, j = np.unravel_index(np.argmin(grid), grid.shape)
        center, span = np.array([a[i], b[j]]), span / 8
    return center


def test_platt_on_a_binary_model_equals_a_grid_search():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 800)
    margin = 4.0 * (labels - 0.5) + rng.normal(size=800) * 2.0  # overconfident
    logits = np.stack([-margin / 2, margin / 2], -1)[None].astype(np.float32)
    got, params = fitted_log_probs("platt", logits, labels)
    a, b = platt_grid_search(margin.astype(np.float64), labels)
    assert float(params["a"][1]) == pytest.approx(a, abs=2e-3)
    assert float(params["b"][1]) == pytest.approx(b, abs=2e-3)
    np.testing.assert_allclose(np.exp(got[0, :, 1]), special.expit(a * margin + b), atol=1e-3)


def test_platt_on_multilabel_sigmoids_fits_each_label():
    rng = np.random.default_rng(6)
    labels = (rng.random((600, 3)) < 0.4).astype(np.float32)
    logits = (3.0 * (labels - 0.5) + rng.normal(size=(600, 3)) * 1.5)[None].astype(np.float32)
    step = posthoc.make("platt")
    params = jax.jit(step.fit)((logits, {}), {"label": labels})
    out, _ = jax.jit(step.apply)((logits, {}), params)
    for c in range(3):
        a, b = platt_grid_search(logits[0, :, c].astype(np.float64), labels[:, c])
        assert float(params["a"][c]) == pytest.approx(a, abs=2e-3)
        np.testing.assert_allclose(out[0, :, c], a * logits[0, :, c] + b, atol=1e-2)


def test_member_level_keeps_the_members_and_ensemble_level_probability_maps_do_not():
    logits, labels = synthetic(7, members=3, n=300)
    for name, members in (("vector_scaling", 3), ("dirichlet_calibration", 1), ("isotonic", 1)):
        for level, want in (("ensemble", members), ("member", 3)):
            step = posthoc.make(name, level=level)
            params = jax.eval_shape(step.fit, (logits, {}), {"label": labels})
            out, _ = jax.eval_shape(step.apply, (logits, {}), params)
            assert out.shape == (want, 300, 4), (name, level)

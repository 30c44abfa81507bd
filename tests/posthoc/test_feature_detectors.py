"""Feature-space detectors against references: Mahalanobis against scikit-learn's
EmpiricalCovariance, relative Mahalanobis and DDU against numpy/scipy Gaussians (DDU's
shrunk covariances from scikit-learn's LedoitWolf and OAS), KNN
against a brute-force numpy search (the blocked top-k over uneven blocks), ViM and
ReAct on a dense head they recover exactly."""

import jax
import numpy as np
import pytest
from scipy import special, stats
from sklearn.covariance import OAS, EmpiricalCovariance, LedoitWolf

from relbench import posthoc
from relbench.posthoc import feature_detectors

K, D = 4, 6


STRUCTURE = np.random.default_rng(100)
CENTRES = STRUCTURE.normal(size=(K, D)) * 3.0
MIXING = np.eye(D) + 0.5 * STRUCTURE.normal(size=(D, D))  # correlated, well conditioned


def features(seed, n=400, members=1):
    """Training and test draws of one class-conditional Gaussian family."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K - 1, n)  # class K - 1 never occurs: it is skipped
    centres, mixing = CENTRES, MIXING
    f = centres[labels] + rng.normal(size=(members, n, D)) @ mixing
    return f.astype(np.float32), labels


def scores(name, train, labels, test, **hparams):
    step = posthoc.make(name, **hparams)
    logits = np.zeros((train.shape[0], train.shape[1], K), np.float32)
    params = jax.jit(step.fit)((logits, {"features": train}), {"label": labels})
    test_logits = np.zeros((test.shape[0], test.shape[1], K), np.float32)
    _, extras = jax.jit(step.apply)((test_logits, {"features": test}), params)
    return np.asarray(extras[f"score/{name}"], np.float64)  # [M, B]


def sklearn_class_distances(train, labels, test):
    """[B, K - 1] squared Mahalanobis distances to the present classes' means."""
    means = np.stack([train[labels == c].mean(0) for c in range(K - 1)])
    covariance = EmpiricalCovariance(assume_centered=True).fit(train - means[labels])
    return np.stack([covariance.mahalanobis(test - m) for m in means], -1)


def test_mahalanobis_equals_scikit_learn_empirical_covariance():
    train, labels = features(0)
    test, _ = features(1, n=50)
    test[0, :5] += 20.0  # far points
    got = scores("mahalanobis", train, labels, test)[0]
    want = sklearn_class_distances(train[0].astype(np.float64), labels, test[0]).min(-1)
    np.testing.assert_allclose(got, want, rtol=2e-3)


def test_relative_mahalanobis_subtracts_the_background_gaussian():
    train, labels = features(2)
    test, _ = features(3, n=50)
    got = scores("relative_mahalanobis", train, labels, test)[0]
    x = train[0].astype(np.float64)
    background = EmpiricalCovariance().fit(x).mahalanobis(test[0])
    want = sklearn_class_distances(x, labels, test[0]).min(-1) - background
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-2)


def ddu_reference(x, labels, test, estimate, jitter):
    """-log sum_k pi_k N(test; mu_k, estimate(class k's features) + jitter m_k I)."""
    log_density = []
    for c in range(K - 1):
        covariance = estimate(x[labels == c])
        covariance += jitter * np.trace(covariance) / D * np.eye(D)
        prior = np.mean(labels == c)
        density = stats.multivariate_normal(x[labels == c].mean(0), covariance)
        log_density.append(np.log(prior) + density.logpdf(test))
    return -special.logsumexp(np.stack(log_density, -1), axis=-1)


ESTIMATORS = {
    "empirical": lambda x: np.cov(x, rowvar=False, bias=True),
    "ledoit_wolf": lambda x: LedoitWolf().fit(x).covariance_,
    "oas": lambda x: OAS().fit(x).covariance_,
}


# ~200 examples per class of 6 features, and ~8 per class: there shrinkage matters.
@pytest.mark.parametrize("n", [600, 25])
@pytest.mark.parametrize("covariance", list(ESTIMATORS))
def test_ddu_is_the_negative_log_density_of_the_class_gaussians(covariance, n):
    train, labels = features(4, n=n)
    test, _ = features(5, n=50)
    jitter = 1e-4
    got = scores("ddu", train, labels, test, covariance=covariance, jitter=jitter)[0]
    x = train[0].astype(np.float64)
    want = ddu_reference(x, labels, test[0], ESTIMATORS[covariance], jitter)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-2)
    if covariance != "empirical" and n < 100:  # the estimators differ there
        empirical = ddu_reference(x, labels, test[0], ESTIMATORS["empirical"], jitter)
        assert np.max(np.abs(empirical - want)) > 1.0


def test_ddu_covariance_is_centred_before_it_is_summed():
    """Features whose means dwarf their spread (pooled activations of a residual
    network): the expanded E[f f^T] - mu mu^T cancels in float32; centring does not."""
    train, labels = features(6)
    test, _ = features(7, n=50)
    offset = 300.0
    got = scores("ddu", train * 0.01 + offset, labels, test * 0.01 + offset)[0]
    want = scores("ddu", train * 0.01, labels, test * 0.01)[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-2)


@pytest.mark.parametrize("block_size", [64, 1000])  # uneven blocks; one block
def test_knn_equals_a_brute_force_search(block_size):
    train, labels = features(6, n=300, members=2)
    test, _ = features(7, n=40, members=2)
    got = scores("knn", train, labels, test, k=7, block_size=block_size)
    unit = lambda f: f / np.linalg.norm(f, axis=-1, keepdims=True)  # noqa: E731
    for m in range(2):
        distances = np.linalg.norm(unit(test[m])[:, None] - unit(train[m])[None], axis=-1)
        np.testing.assert_allclose(got[m], np.sort(distances, axis=-1)[:, 6], atol=1e-4)


def test_knn_bank_is_bounded_by_its_setting():
    train, labels = features(8, n=300)
    step = posthoc.make("knn", k=3, bank_size=100)
    params = step.fit((np.zeros((1, 300, K), np.float32), {"features": train}), {"label": labels})
    assert params["bank"].shape == (1, 100, D)


def dense_head(seed, train):
    rng = np.random.default_rng(seed)
    weight, bias = rng.normal(size=(D, K)), rng.normal(size=K)
    return (train @ weight + bias).astype(np.float32), weight, bias


def detector_on_a_dense_head(name, **hparams):
    train, labels = features(9)
    test, _ = features(10, n=50)
    logits, weight, bias = dense_head(11, train)
    step = posthoc.make(name, **hparams)
    params = jax.jit(step.fit)((logits, {"features": train}), {"label": labels})
    np.testing.assert_allclose(params["weight"][0], weight, rtol=1e-3, atol=1e-3)
    _, extras = jax.jit(step.apply)(
        ((test @ weight + bias).astype(np.float32), {"features": test}), params
    )
    return (
        train[0].astype(np.float64),
        test[0].astype(np.float64),
        weight,
        bias,
        extras[f"score/{name}"][0],
    )


def test_vim_recovers_the_head_and_scores_the_virtual_logit():
    train, test, weight, bias, got = detector_on_a_dense_head("vim", principal_fraction=0.5)
    origin = -bias @ np.linalg.pinv(weight)
    _, vectors = np.linalg.eigh(np.cov(train, rowvar=False))
    residual = vectors[:, :3]  # D - D_p = 3 smallest directions
    alpha = np.mean(np.max(train @ weight + bias, -1)) / np.mean(
        np.linalg.norm((train - origin) @ residual, axis=-1)
    )
    want = alpha * np.linalg.norm((test - origin) @ residual, axis=-1) - special.logsumexp(
        test @ weight + bias, -1
    )
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)


def test_react_clips_at_the_training_percentile():
    train, test, weight, bias, got = detector_on_a_dense_head("react", percentile=80.0)
    clipped = np.minimum(test, np.percentile(train, 80.0))
    np.testing.assert_allclose(
        got, -special.logsumexp(clipped @ weight + bias, -1), rtol=1e-3, atol=1e-3
    )


def test_a_model_without_features_is_refused():
    step = posthoc.make("mahalanobis")
    with pytest.raises(posthoc_error(), match="penultimate features"):
        step.fit((np.zeros((1, 5, K)), {}), {"label": np.zeros(5, int)})


def posthoc_error():
    from relbench.errors import UsageError

    return UsageError


def test_blocked_top_k_holds_block_size_plus_k_similarities():
    queries = np.eye(3, 5, dtype=np.float32)
    bank = np.random.default_rng(12).normal(size=(11, 5)).astype(np.float32)
    best = feature_detectors.blocked_top_k_similarity(queries, bank, 4, 3)
    np.testing.assert_allclose(best, -np.sort(-(queries @ bank.T), axis=-1)[:, :4], rtol=1e-6)

"""Ensemble diversity and uncertainty scores against numpy loops over members."""

import jax
import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from relbench import metrics
from relbench.metrics import diversity, scores
from tests.metrics.conftest import make_predictions, predictions


def _entropy(p):
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=-1)


def _diversity_loop(logits):
    members, n, _ = logits.shape
    p = softmax(logits.astype(np.float64), axis=-1)
    mean = p.mean(0)
    out = {k: np.zeros(n) for k in diversity.NAMES}
    for i in range(n):
        out["predictive_entropy"][i] = _entropy(mean[i])
        out["expected_member_entropy"][i] = np.mean([_entropy(p[m, i]) for m in range(members)])
        pairs = [(a, b) for a in range(members) for b in range(members) if a != b]
        for a, b in pairs:
            out["disagreement"][i] += (p[a, i].argmax() != p[b, i].argmax()) / len(pairs)
            kl = np.sum(p[a, i] * (np.log(p[a, i]) - np.log(p[b, i])))
            out["pairwise_kl"][i] += kl / len(pairs)
    out["mutual_information"] = out["predictive_entropy"] - out["expected_member_entropy"]
    return out


@pytest.mark.parametrize("members", [1, 2, 5])
def test_diversity_against_loop(members):
    logits, _, labels, mask = make_predictions(members, members, 80, 4)
    out = metrics.evaluate_arrays(
        (diversity.ENSEMBLE_DIVERSITY,), predictions(logits, labels, mask)
    )
    reference = _diversity_loop(logits)
    keep = mask > 0
    names = diversity.NAMES if members > 1 else ("predictive_entropy", "expected_member_entropy")
    assert sorted(out) == sorted(names)  # one member: the between-member terms are omitted
    for name in names:
        assert out[name] == pytest.approx(reference[name][keep].mean(), abs=2e-6), name
    assert metrics.ensemble_diversity(logits, mask) == pytest.approx(out)


def test_single_member_omits_the_between_member_terms():
    logits, _, _, _ = make_predictions(0, 1, 50, 3)
    out = metrics.ensemble_diversity(logits)
    assert all(np.isfinite(v) for v in out.values())
    assert not set(diversity.BETWEEN_MEMBERS) & set(out)  # constant 0: not a result
    assert out["predictive_entropy"] == pytest.approx(out["expected_member_entropy"])


def test_identical_members_have_no_diversity():
    logits, _, _, _ = make_predictions(1, 1, 50, 3)
    out = metrics.ensemble_diversity(np.repeat(logits, 4, axis=0))
    assert out["disagreement"] == 0.0
    assert out["pairwise_kl"] == pytest.approx(0.0, abs=1e-6)
    assert out["mutual_information"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("members", [1, 3])
def test_uncertainty_scores_against_numpy(members):
    logits, log_probs, labels, mask = make_predictions(members + 20, members, 40, 5)
    variance = np.random.default_rng(0).uniform(size=(members, 40, 5)).astype(np.float32)
    p = predictions(logits, labels, mask, extras={"variance": variance})
    out = {k: np.asarray(v) for k, v in jax.jit(scores.uncertainty_scores)(p).items()}
    probs = np.exp(log_probs)
    member_entropy = _entropy(softmax(logits.astype(np.float64), -1)).mean(0)
    np.testing.assert_allclose(out["max_prob"], -probs.max(-1), rtol=1e-6)
    np.testing.assert_allclose(out["entropy"], _entropy(probs), rtol=1e-5, atol=1e-6)
    if members == 1:  # constant 0 for one member: omitted
        assert "mutual_information" not in out
    else:
        np.testing.assert_allclose(
            out["mutual_information"], np.maximum(_entropy(probs) - member_entropy, 0), atol=2e-6
        )
    np.testing.assert_allclose(out["max_logit"], -logits.max(-1).mean(0), rtol=1e-6)
    np.testing.assert_allclose(out["energy"], -logsumexp(logits, -1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(out["variance"], variance.mean(axis=(0, 2)), rtol=1e-6)
    assert "variance" not in scores.uncertainty_scores(predictions(logits, labels, mask))


def test_entropy_of_a_one_hot_is_zero_not_nan():
    log_probs = np.array([[0.0, -np.inf, -np.inf]], np.float32)
    assert float(scores.entropy(log_probs)[0]) == 0.0

"""The multi-label suite against scikit-learn and numpy loops; streamed == whole array;
OOD sets pooled with the reference set through the evaluation protocol."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, log_expit
from sklearn import metrics as sk

from relbench import metrics
from relbench.metrics import multilabel
from relbench.train import evaluation
from tests.metrics.test_streaming import _stream

K = 5


def make_multilabel(seed: int, members: int, n: int, *, ties: bool = False):
    """Member logits, labels correlated with them (prevalence 0.15-0.6 per label), and a
    mask with a few zeros."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, K))
    logits = signal[None] + 1.5 * rng.normal(size=(members, n, K))
    if ties:  # many equal probabilities: the same members' logits, in the same order
        logits = np.sort(np.round(logits), axis=0)
    prevalence = np.linspace(0.15, 0.6, K)
    labels = expit(2 * signal + np.log(prevalence / (1 - prevalence))) > rng.uniform(size=(n, K))
    mask = (rng.uniform(size=n) > 0.2).astype(np.float32)
    return logits.astype(np.float32), labels.astype(np.float32), mask


def whole(logits, labels, mask, extras=None):
    p = metrics.Predictions(
        logits=jnp.asarray(logits),
        log_probs=metrics.task_log_probs("multilabel", jnp.asarray(logits)),
        labels=jnp.asarray(labels),
        mask=jnp.asarray(mask),
        extras=extras or {},
    )
    return p


def reference_probs(logits):
    return expit(logits.astype(np.float64)).mean(0)


def _binary_entropy(q):
    return -(q * np.log(q) + (1 - q) * np.log(1 - q))


def numpy_ece(probs, labels, bins=15):
    """Equal-width bins ((b-1)/15, b/15] over every (example, label) pair."""
    p, y = probs.reshape(-1), labels.reshape(-1)
    index = np.clip(np.ceil(p * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.sum() / len(p) * abs(y[inside].mean() - p[inside].mean())
    return total


@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
def test_in_distribution_metrics_against_sklearn(ties):
    logits, labels, mask = make_multilabel(0, 3, 400, ties=ties)
    suite = multilabel.MULTILABEL_IN_DISTRIBUTION
    stats = jax.device_get(
        jax.jit(metrics.batch_statistics, static_argnums=0)(suite, whole(logits, labels, mask))
    )
    out = metrics.results(suite, metrics.add_statistics(suite, None, stats))
    assert metrics.multilabel_metrics(logits, labels, mask) == pytest.approx(out)
    keep = mask > 0
    exact, y = reference_probs(logits)[keep], labels[keep].astype(int)
    # Thresholds, ranks and bins see the suite's own float32 probabilities (XLA's exp
    # may round tied inputs apart), checked against the float64 ones.
    p = stats[suite.index(multilabel.LABEL_RANKING)]["probs"][keep].astype(np.float64)
    np.testing.assert_allclose(p, exact, rtol=1e-5)
    predicted = (p > 0.5).astype(int)
    expected = {
        "nll": sum(sk.log_loss(y[:, k], exact[:, k], labels=[0, 1]) for k in range(K)),
        "brier": sum(sk.brier_score_loss(y[:, k], exact[:, k]) for k in range(K)),
        "label_accuracy": 1 - sk.hamming_loss(y, predicted),
        "subset_accuracy": sk.accuracy_score(y, predicted),
        "micro_f1": sk.f1_score(y, predicted, average="micro", zero_division=0),
        "macro_f1": sk.f1_score(y, predicted, average="macro", zero_division=0),
        "mean_average_precision": sk.average_precision_score(y, p, average="macro"),
        "macro_auroc": sk.roc_auc_score(y, p, average="macro"),
        "micro_average_precision": sk.average_precision_score(y, p, average="micro"),
        "micro_auroc": sk.roc_auc_score(y, p, average="micro"),
        "ece": numpy_ece(p, y),
        "classwise_ece": np.mean([numpy_ece(p[:, k], y[:, k]) for k in range(K)]),
    }
    for name, value in expected.items():
        assert out[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert {"rms_calibration_error", "mce", *multilabel.DIVERSITY_NAMES} <= set(out)


def test_nll_is_exact_for_confident_labels_either_way():
    # sigmoid(+-30) rounds to 1 or 0 in float32: the NLL still charges the wrong labels
    # log(1 + e^30) ~ 30 nats each, and the right ones ~e^-30.
    logits = np.array([[[30.0, -30.0, 30.0, -30.0, 0.0]]], np.float32)
    labels = np.array([[1.0, 1.0, 0.0, 0.0, 1.0]], np.float32)
    out = metrics.multilabel_metrics(logits, labels)
    expected = -np.sum(labels * log_expit(logits[0]) + (1 - labels) * log_expit(-logits[0]))
    assert out["nll"] == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(out["nll"]) and out["nll"] > 60


def test_undefined_labels_are_left_out_of_the_macro_averages():
    logits, labels, _ = make_multilabel(1, 2, 200)
    labels[:, 0] = 0.0  # no positive: AP and AUROC of label 0 are undefined
    labels[:, 1] = 1.0  # no negative: its AUROC is undefined, its AP is not
    out = metrics.multilabel_metrics(logits, labels)
    p = reference_probs(logits)
    aps = [sk.average_precision_score(labels[:, k], p[:, k]) for k in range(1, K)]
    aurocs = [sk.roc_auc_score(labels[:, k], p[:, k]) for k in range(2, K)]
    assert out["mean_average_precision"] == pytest.approx(np.mean(aps))
    assert out["macro_auroc"] == pytest.approx(np.mean(aurocs))
    none = metrics.multilabel_metrics(logits, np.zeros_like(labels))
    assert np.isnan(none["mean_average_precision"]) and np.isnan(none["macro_auroc"])


def diversity_loop(logits):
    """Per example: entropies and MI summed over labels; pairwise KL over ordered member
    pairs, summed over labels; disagreement over pairs, averaged over labels."""
    members, n, _ = logits.shape
    s = expit(logits.astype(np.float64))
    p = s.mean(0)
    pairs = [(a, b) for a in range(members) for b in range(members) if a != b]
    out = {
        "predictive_entropy": _binary_entropy(p).sum(-1),
        "expected_member_entropy": _binary_entropy(s).mean(0).sum(-1),
        "disagreement": np.zeros(n),
        "pairwise_kl": np.zeros(n),
    }
    for a, b in pairs:
        kl = s[a] * np.log(s[a] / s[b]) + (1 - s[a]) * np.log((1 - s[a]) / (1 - s[b]))
        out["pairwise_kl"] += kl.sum(-1) / len(pairs)
        out["disagreement"] += ((s[a] > 0.5) != (s[b] > 0.5)).mean(-1) / len(pairs)
    out["mutual_information"] = out["predictive_entropy"] - out["expected_member_entropy"]
    return out


@pytest.mark.parametrize("members", [1, 2, 5])
def test_diversity_and_scores_against_loops(members):
    logits, labels, mask = make_multilabel(members, members, 120)
    variance = np.random.default_rng(0).uniform(size=(members, 120, K)).astype(np.float32)
    p = whole(logits, labels, mask, extras={"variance": jnp.asarray(variance)})
    out = metrics.evaluate_arrays((multilabel.MULTILABEL_DIVERSITY,), p)
    reference = diversity_loop(logits)
    keep = mask > 0
    between = ("mutual_information", "pairwise_kl", "disagreement")
    for name in multilabel.DIVERSITY_NAMES:
        if members == 1 and name in between:  # constant 0 for one member: omitted
            assert name not in out
            continue
        assert out[name] == pytest.approx(reference[name][keep].mean(), abs=2e-6), name
    scores = jax.device_get(multilabel.uncertainty_scores(p))
    energy = -np.mean(np.sum(np.logaddexp(0, logits.astype(np.float64)), -1), 0)
    np.testing.assert_allclose(scores["entropy"], reference["predictive_entropy"], atol=2e-6)
    if members > 1:
        np.testing.assert_allclose(
            scores["mutual_information"], np.maximum(reference["mutual_information"], 0), atol=2e-6
        )
    else:
        assert "mutual_information" not in scores
    np.testing.assert_allclose(scores["joint_energy"], energy, rtol=1e-5)
    np.testing.assert_allclose(scores["variance"], variance.mean((0, 2)), rtol=1e-6)
    no_variance = multilabel.uncertainty_scores(whole(logits, labels, mask))
    assert "variance" not in no_variance


def test_predictive_probabilities_are_the_mean_member_sigmoid():
    logits, _, _ = make_multilabel(3, 4, 50)
    log_p, log_not_p = metrics.multilabel_log_probs(jnp.asarray(logits))
    p = reference_probs(logits)
    np.testing.assert_allclose(np.exp(log_p), p, rtol=1e-5)
    np.testing.assert_allclose(np.exp(log_not_p), 1 - p, rtol=1e-5)
    np.testing.assert_allclose(metrics.multilabel_probs(jnp.asarray(logits)), p, rtol=1e-5)
    np.testing.assert_array_equal(metrics.task_log_probs("multilabel", jnp.asarray(logits)), log_p)


@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("is_ood", [False, True])
def test_streaming_equals_whole_array(members, is_ood):
    """Uneven batches padded with garbage rows, sharded over 4 devices."""
    logits, labels, mask = make_multilabel(7, members, 203, ties=True)
    if is_ood:
        labels = np.full_like(labels, -1.0)
    variance = np.random.default_rng(0).uniform(size=logits.shape[:2]).astype(np.float32)
    suite = metrics.eval_suite("multilabel", is_ood)
    p = whole(logits, labels, mask, extras={"variance": jnp.asarray(variance)})
    stats = jax.device_get(jax.jit(metrics.batch_statistics, static_argnums=0)(suite, p))
    totals = metrics.add_statistics(suite, None, stats)
    expected, expected_curves = metrics.results(suite, totals), metrics.curves(suite, totals)
    streamed, streamed_curves = _stream(suite, logits, labels, mask, variance, [0, 37, 137, 203])
    assert streamed.keys() == expected.keys() and expected
    for name, value in expected.items():
        assert streamed[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert np.allclose(
        jax.tree.leaves(streamed_curves), jax.tree.leaves(expected_curves), equal_nan=True
    )
    chunked = metrics.evaluate_arrays(suite, p, chunk_size=50)
    assert chunked == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_ood_sets_are_pooled_with_the_reference_set_on_every_score():
    inside, labels, _ = make_multilabel(4, 3, 150)
    outside = 0.2 * make_multilabel(5, 3, 60)[0]  # flatter logits: more uncertain
    evaluated, scores = {}, {}
    for name, logits, variance, is_ood in (
        ("test", inside, 1.0, False),
        ("ood", outside, 2.0, True),
    ):
        suite = metrics.eval_suite("multilabel", is_ood)
        n = logits.shape[1]
        set_labels = np.full((n, K), -1.0, np.float32) if is_ood else labels
        extras = {"variance": jnp.full((3, n), variance)}
        p = whole(logits, set_labels, np.ones(n, np.float32), extras)
        stats = jax.device_get(jax.jit(metrics.batch_statistics, static_argnums=0)(suite, p))
        totals = metrics.add_statistics(suite, None, stats)
        evaluated[name] = evaluation.SetTotals(is_ood, suite, totals)
        scores[name] = evaluated[name].scores()  # the concatenated per-example scores
    results, curves = evaluation.summarize(evaluated, evaluation.EvaluationSettings())
    assert set(scores["ood"]) == {"entropy", "mutual_information", "joint_energy", "variance"}
    is_out = np.r_[np.zeros(150), np.ones(60)]
    for score in ("entropy", "mutual_information", "joint_energy", "variance"):
        pooled = np.r_[scores["test"][score], scores["ood"][score]]
        assert results["ood"][f"auroc/{score}"] == pytest.approx(sk.roc_auc_score(is_out, pooled))
        assert f"histogram/{score}" in curves["ood"]
    assert results["ood"]["auroc/entropy"] > 0.9  # the flat logits are found
    assert results["ood"]["auroc/variance"] == 1.0
    assert "nll" in results["test"] and "nll" not in results["ood"]


def test_no_suite_for_an_unknown_task():
    with pytest.raises(ValueError, match="classification, multilabel or regression"):
        metrics.eval_suite("ranking", False)

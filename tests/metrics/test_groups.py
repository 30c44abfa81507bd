"""Per-group and worst-group metrics against a numpy reference, streamed == whole array."""

import jax.numpy as jnp
import numpy as np
import pytest

from relbench import metrics as metrics_lib
from relbench.metrics.groups import GROUP_METRICS

B, K, G = 60, 3, 4


def _numpy_reference(probs, labels, member, mask):
    confidence, correct = probs.max(-1), (probs.argmax(-1) == labels).astype(float)
    out = {}
    for g in range(member.shape[1]):
        rows = (member[:, g] > 0) & (mask > 0)
        if not rows.any():
            continue
        out[f"accuracy/group_{g}"] = correct[rows].mean()
        bins = np.clip(np.ceil(confidence[rows] * 15).astype(int) - 1, 0, 14)
        out[f"ece/group_{g}"] = sum(
            abs(correct[rows][bins == b].sum() - confidence[rows][bins == b].sum()) / rows.sum()
            for b in range(15)
        )
    accuracies = [v for k, v in out.items() if k.startswith("accuracy/")]
    out["worst_group_accuracy"] = min(accuracies)
    out["worst_group_ece"] = max(v for k, v in out.items() if k.startswith("ece/"))
    out["mean_group_accuracy"] = np.mean(accuracies)
    return out


def _predictions(rng, groups):
    logits = rng.normal(size=(2, B, K)).astype(np.float32) * 2
    labels = rng.integers(0, K, B).astype(np.int32)
    mask = (rng.uniform(size=B) > 0.15).astype(np.float32)
    return metrics_lib.Predictions(
        logits=jnp.asarray(logits),
        log_probs=metrics_lib.predictive_log_probs(jnp.asarray(logits)),
        labels=jnp.asarray(labels),
        mask=jnp.asarray(mask),
        groups=None if groups is None else jnp.asarray(groups),
    )


@pytest.mark.parametrize("overlapping", [False, True])
def test_worst_group_metrics_equal_the_numpy_reference(overlapping):
    rng = np.random.default_rng(int(overlapping))
    member = np.eye(G, dtype=np.float32)[rng.integers(0, G - 1, B)]  # group 3 empty
    if overlapping:  # a second membership: every example is also in group 3
        member[:, 3] = 1.0
    p = _predictions(rng, member)
    whole = metrics_lib.evaluate_arrays((GROUP_METRICS,), p)
    streamed = metrics_lib.evaluate_arrays((GROUP_METRICS,), p, chunk_size=7)
    probs = np.exp(np.asarray(p.log_probs, np.float64))
    reference = _numpy_reference(probs, np.asarray(p.labels), member, np.asarray(p.mask))
    assert set(whole) == set(reference)
    for name, value in reference.items():
        assert whole[name] == pytest.approx(value, abs=1e-6), name
        assert streamed[name] == pytest.approx(value, abs=1e-6), name
    assert ("accuracy/group_3" in whole) == overlapping


def test_sets_without_groups_report_nothing():
    p = _predictions(np.random.default_rng(0), None)
    assert metrics_lib.evaluate_arrays((GROUP_METRICS,), p) == {}

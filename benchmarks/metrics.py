"""Metric speed: relbench vs scikit-learn / numpy on 1,000,000 predictions x 10 classes.

    python benchmarks/metrics.py [--n 1000000] [--repeats 5]

Measured side by side in one process on the same arrays: the median wall time of
``--repeats`` calls (after one warm-up call, which compiles relbench's jitted
statistics), and the ratio reference / relbench (> 1: relbench is faster). The
numbers are also checked to agree. Target: every ratio >= 1.

* ECE (15 equal-width bins): ``relbench.metrics.expected_calibration_error(probs,
  labels)`` vs a vectorised numpy reference (``np.digitize`` + ``np.bincount``);
  scikit-learn has no ECE.
* AUROC: ``relbench.metrics.auroc(scores, positives)`` vs ``sklearn.metrics.roc_auc_score``.
* NLL: ``relbench.metrics.negative_log_likelihood(log_probs, labels)`` vs
  ``sklearn.metrics.log_loss(labels, probs)``; relbench's time includes taking the log of
  the probabilities, so both start from the same array. On float32 input scikit-learn
  sums in float32 and is off by ~1.5e-4 relative at this size; relbench sums chunks in
  float64, so its value is checked against a float64 numpy NLL instead.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from relbench import metrics


def numpy_ece(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == labels
    bins = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins)
    gap = np.bincount(bins, correct - confidence, minlength=num_bins)
    return float(np.sum(np.abs(gap)) / count.sum())


def timed(fn, repeats: int) -> tuple[float, object]:
    value = fn()  # warm-up (and jit compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(args.n, args.classes)).astype(np.float32) * 3
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    labels = rng.integers(0, args.classes, args.n)
    scores = probs.max(-1).astype(np.float64)
    positives = probs.argmax(-1) == labels

    exact_nll = -np.mean(np.log(probs.astype(np.float64)[np.arange(args.n), labels]))
    cases = [  # name, relbench, reference, what the reference is, the exact value
        (
            "ECE",
            lambda: metrics.expected_calibration_error(probs, labels),
            lambda: numpy_ece(probs, labels),
            "numpy",
            numpy_ece(probs.astype(np.float64), labels),
        ),
        (
            "AUROC",
            lambda: metrics.auroc(scores, positives),
            lambda: roc_auc_score(positives, scores),
            "sklearn roc_auc_score",
            None,
        ),
        (
            "NLL",
            lambda: metrics.negative_log_likelihood(np.log(probs), labels),
            lambda: log_loss(labels, probs),
            "sklearn log_loss",
            exact_nll,
        ),
    ]
    print(f"{args.n:,} predictions x {args.classes} classes, median of {args.repeats}")
    print(f"{'metric':6} {'relbench s':>11} {'reference s':>12} {'ratio':>6}  reference")
    for name, ours, reference, label, exact in cases:
        ours_time, ours_value = timed(ours, args.repeats)
        ref_time, ref_value = timed(reference, args.repeats)
        expected = ref_value if exact is None else exact
        assert abs(ours_value - expected) <= 1e-5 * max(1.0, abs(expected)), (name, ours_value)
        print(f"{name:6} {ours_time:11.4f} {ref_time:12.4f} {ref_time / ours_time:6.2f}  {label}")


if __name__ == "__main__":
    main()

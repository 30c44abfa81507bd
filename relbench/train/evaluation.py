"""The evaluation protocol: which sets a run evaluates and how their results combine.

``config.evaluation`` (``EvaluationSettings``) lists, beside the dataset's own sets
(in-distribution test/validation and its OOD sets), a shift suite: every corruption x
severity of one in-distribution set (``relbench.data.corruptions``), named
``"{shift_suite}/{corruption}/{severity}"``. After every set has been evaluated once:

* each OOD set is pooled with the in-distribution reference set (``ood_reference``) for
  the detection metrics (``relbench.metrics.ood``: AUROC, AUPR-in, AUPR-out, FPR@95 per
  uncertainty score, OOD the positive class) and the open-set recognition metrics
  (``relbench.metrics.open_set``: closed-set accuracy, OSCR and its curve);
* the suite is the one path to corrupted sets: where the dataset has a corruption
  benchmark (``Dataset.corrupted``: CIFAR-10-C, ImageNet-C from TFDS) and
  ``benchmark`` is on, each ``(corruption, severity)`` it has prepared is read from it
  (``jpeg`` is TFDS's ``jpeg_compression``); the others are the native corruptions
  (``relbench.data.corruptions``, logged); a corruption that is neither prepared nor
  native is an error that says how to prepare it. ``corruptions=("all",)`` is every
  corruption of the benchmark (the native ones without one);
* each shift suite gets a family entry in ``results.json`` with the means over its
  corruptions and severities: ``cAcc``, ``cNLL``, ``cECE``, ``cBrier``, and, where the
  reference (AlexNet) errors of every evaluated corruption are known (ImageNet-C),
  ``mCE``: the mean over corruptions of ``sum_s E_{c,s} / sum_s E^AlexNet_{c,s}`` [1].

References:
  [1] Hendrycks, Dietterich. Benchmarking Neural Network Robustness to Common
      Corruptions and Perturbations. ICLR 2019. https://arxiv.org/abs/1903.12261

``results.json`` maps set names (and suite names) to ``{metric: float}``; ``curves.json``
holds, per set, the arrays behind plots (reliability diagram, risk-coverage curve, OOD
score histograms).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from relbench import data as data_lib
from relbench import metrics as metrics_lib
from relbench.data import corruptions as corruptions_lib
from relbench.errors import UsageError
from relbench.metrics import ood, open_set

FAMILY_AGGREGATES = {"cAcc": "accuracy", "cNLL": "nll", "cECE": "ece", "cBrier": "brier"}

#: AlexNet's top-1 error on each ImageNet-C corruption, averaged over severities 1-5
#: ([1], Table 1 footnote; the values robustness benchmarks normalize mCE with).
ALEXNET_ERRORS = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg": 0.606500,
}
#: Shift suites whose mCE is normalized by reference errors: suite -> errors.
REFERENCE_ERRORS = {"imagenet_c": ALEXNET_ERRORS}


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    """``config.evaluation``: the evaluation suite of an experiment.

    Attributes:
      ood_reference: the in-distribution set pooled with every OOD set.
      shift_suite: the shift suite's name (e.g. ``"digits_c"``); empty for none.
      shift_source: the in-distribution set the corruptions are applied to.
      corruptions: corruption names (native: ``relbench.data.corruptions.NAMES``, or
        the benchmark's), ``("all",)`` for every one.
      severities: severities, each in ``relbench.data.corruptions.SEVERITIES``.
      corruption_seed: the seed of the native corruptions' random draws.
      benchmark: read the dataset's corruption benchmark where it is prepared.
      save_predictions: also write every set's member outputs, labels and OOD flags to
        ``predictions.npz`` (``relbench evaluate-predictions`` reads it back).
    """

    ood_reference: str = "test"
    shift_suite: str = ""
    shift_source: str = "test"
    corruptions: Sequence[str] = corruptions_lib.NAMES
    severities: Sequence[int] = corruptions_lib.SEVERITIES
    corruption_seed: int = 0
    benchmark: bool = True
    save_predictions: bool = False


def _shift_suite(dataset: data_lib.Dataset, settings: EvaluationSettings) -> dict:
    """``{"{suite}/{corruption}/{severity}": EvalSet}``: the benchmark's sets where
    prepared, the native corruptions of ``shift_source`` otherwise."""
    benchmark = dataset.corrupted if settings.benchmark else None
    names = tuple(settings.corruptions)
    if "all" in names:
        names = benchmark.names if benchmark is not None else corruptions_lib.NAMES
    known = set(corruptions_lib.NAMES) | set(benchmark.names if benchmark else ())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"unknown corruption '{unknown[0]}' in config.evaluation.corruptions; choose "
            f"'all' or some of: {', '.join(sorted(known))}"
        )
    bad = sorted(set(settings.severities) - set(corruptions_lib.SEVERITIES))
    if bad:
        raise UsageError(
            f"corruption severity {bad[0]} is not one of {corruptions_lib.SEVERITIES}; fix "
            "config.evaluation.severities"
        )
    source = dataset.eval_sets[settings.shift_source].source
    sets = {}
    for name in names:
        for severity in settings.severities:
            eval_set = None
            if benchmark is not None and name in benchmark.names:
                eval_set = benchmark.read(name, severity)
            if eval_set is None and name not in corruptions_lib.NAMES:
                raise UsageError(
                    f"corruption '{name}' (severity {severity}) has no native version and "
                    "the dataset's corruption benchmark is not prepared: prepare it (see "
                    "the warning above) or leave it out of config.evaluation.corruptions"
                )
            if eval_set is None:
                corrupted = corruptions_lib.CorruptedSource(
                    source, name, severity, settings.corruption_seed
                )
                eval_set = data_lib.EvalSet(corrupted)
            sets[corruptions_lib.shift_set_name(settings.shift_suite, name, severity)] = eval_set
    return sets


def evaluation_sets(
    dataset: data_lib.Dataset, settings: EvaluationSettings
) -> dict[str, data_lib.EvalSet]:
    """The dataset's own sets, then the shift suite's, in a fixed order."""
    sets = dict(dataset.eval_sets)
    has_ood = any(s.is_ood for s in sets.values())
    if has_ood and (settings.ood_reference not in sets or sets[settings.ood_reference].is_ood):
        raise UsageError(
            f"config.evaluation.ood_reference '{settings.ood_reference}' is not an "
            f"in-distribution set of the dataset; choose one of: "
            f"{', '.join(n for n, s in sets.items() if not s.is_ood)}"
        )
    if settings.shift_suite:
        if settings.shift_source not in sets or sets[settings.shift_source].is_ood:
            raise UsageError(
                f"config.evaluation.shift_source '{settings.shift_source}' is not an "
                "in-distribution set of the dataset; name one (e.g. 'test')"
            )
        sets.update(_shift_suite(dataset, settings))
    return sets


@dataclasses.dataclass(frozen=True)
class SetTotals:
    """One evaluated set: its metric suite and the combined statistics."""

    is_ood: bool
    suite: tuple[metrics_lib.StreamingMetric, ...]
    totals: list[dict]

    def scores(self) -> dict[str, np.ndarray] | None:
        """The per-example uncertainty scores, if the suite collects them."""
        for metric, totals in zip(self.suite, self.totals, strict=True):
            if metric in metrics_lib.SCORE_METRICS:
                return metrics_lib.streaming.combined(metric, totals)
        return None

    def correctness(self) -> np.ndarray | None:
        """The per-example correctness, if the suite collects it (in-distribution sets)."""
        for metric, totals in zip(self.suite, self.totals, strict=True):
            if metric is metrics_lib.SELECTIVE_PREDICTION:
                return metrics_lib.streaming.combined(metric, totals)["correct"]
        return None


def summarize(
    evaluated: Mapping[str, SetTotals], settings: EvaluationSettings
) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """``(results, curves)``: per-set metrics, OOD mixtures, and shift-family means."""
    results = {n: metrics_lib.results(s.suite, s.totals) for n, s in evaluated.items()}
    curves = {n: metrics_lib.curves(s.suite, s.totals) for n, s in evaluated.items()}
    reference = evaluated.get(settings.ood_reference)
    reference_scores = reference.scores() if reference is not None else None
    reference_correct = reference.correctness() if reference is not None else None
    for name, entry in evaluated.items():
        out_scores = entry.scores()
        if entry.is_ood and reference_scores is not None and out_scores is not None:
            results[name].update(ood.detection_results(reference_scores, out_scores))
            curves[name].update(ood.score_histograms(reference_scores, out_scores))
            if reference_correct is not None:
                known = (reference_scores, reference_correct, out_scores)
                results[name].update(open_set.open_set_results(*known))
                curves[name].update(open_set.open_set_curves(*known))
    results.update(family_aggregates(results))
    return results, curves


def mean_corruption_error(
    errors: Mapping[tuple[str, int], float], reference: Mapping[str, float]
) -> float | None:
    """mCE [1]: the mean over corruptions of ``mean_s E_{c,s} / E^ref_c`` (``E^ref_c``
    the reference's error averaged over severities 1-5); None unless every corruption
    evaluated has a reference error and was evaluated at every severity."""
    by_corruption: dict[str, dict[int, float]] = {}
    for (corruption, severity), error in errors.items():
        by_corruption.setdefault(corruption, {})[severity] = error
    complete = all(
        c in reference and sorted(s) == list(corruptions_lib.SEVERITIES)
        for c, s in by_corruption.items()
    )
    if not by_corruption or not complete:
        return None
    ratios = [np.mean(list(s.values())) / reference[c] for c, s in by_corruption.items()]
    return float(np.mean(ratios))


def family_aggregates(results: Mapping[str, Mapping[str, float]]) -> dict[str, dict]:
    """``{suite: {cAcc, cNLL, cECE, cBrier[, mCE]}}``: means over every corruption x
    severity, and mCE where the suite has reference errors (``REFERENCE_ERRORS``)."""
    families: dict[str, list[str]] = {}
    for name in results:
        parsed = corruptions_lib.parse_shift_set_name(name)
        if parsed is not None:
            families.setdefault(parsed[0], []).append(name)
    aggregates = {}
    for family, names in families.items():
        aggregates[family] = {
            short: float(np.mean([results[n][metric] for n in names]))
            for short, metric in FAMILY_AGGREGATES.items()
        }
        errors = {}
        for n in names:
            _, corruption, severity = corruptions_lib.parse_shift_set_name(n)
            errors[corruption, severity] = 1.0 - results[n]["accuracy"]
        mce = mean_corruption_error(errors, REFERENCE_ERRORS.get(family, {}))
        if mce is not None:
            aggregates[family]["mCE"] = mce
    return aggregates


HEADLINE = (
    "accuracy",
    "label_accuracy",  # multi-label sets
    "mean_average_precision",
    "nll",
    "ece",
    "brier",
    "aurc",
    "auroc/entropy",
    "aupr_in/entropy",
    "aupr_out/entropy",
    "fpr95/entropy",
    "oscr",
    *FAMILY_AGGREGATES,
    "mCE",
    "soft_nll",
    "rmse",
    "crps",
    "coverage_90",
    "mean_predictive_std",
    "raw/nll",  # beside the post-hoc steps' nll and ece, where a run has them
    "raw/ece",
)


def headline_results(results: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """The few numbers a terminal shows: headline metrics, no per-corruption sets."""
    return {
        name: {k: v for k, v in metrics.items() if k in HEADLINE}
        for name, metrics in results.items()
        if corruptions_lib.parse_shift_set_name(name) is None
    }

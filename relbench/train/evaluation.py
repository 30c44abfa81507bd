"""The evaluation protocol: which sets a run evaluates and how their results combine.

``config.evaluation`` (``EvaluationSettings``) lists, beside the dataset's own sets
(in-distribution test/validation and its OOD sets), a shift suite: every corruption x
severity of one in-distribution set (``relbench.data.corruptions``), named
``"{shift_suite}/{corruption}/{severity}"``. After every set has been evaluated once:

* each OOD set is pooled with the in-distribution reference set (``ood_reference``) for
  the detection metrics (``relbench.metrics.ood``: AUROC, AUPR-in, AUPR-out, FPR@95 per
  uncertainty score, OOD the positive class) and the open-set recognition metrics
  (``relbench.metrics.open_set``: closed-set accuracy, OSCR and its curve);
* where ``tfds_corrupted`` names a prepared TFDS corruption dataset (e.g.
  ``"cifar10_corrupted"``), its ``{corruption}_{severity}`` configs replace the native
  corruptions of the same name (``jpeg`` is TFDS's ``jpeg_compression``); a config that
  is not prepared, and corruptions TFDS lacks, fall back to the native ones (logged);
* each shift suite gets a family entry in ``results.json`` with the means over its
  corruptions and severities: ``cAcc``, ``cNLL``, ``cECE``, ``cBrier``.

``results.json`` maps set names (and suite names) to ``{metric: float}``; ``curves.json``
holds, per set, the arrays behind plots (reliability diagram, risk-coverage curve, OOD
score histograms).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from relbench import data as data_lib
from relbench import metrics as metrics_lib
from relbench.data import corruptions as corruptions_lib
from relbench.errors import UsageError
from relbench.metrics import ood, open_set

FAMILY_AGGREGATES = {"cAcc": "accuracy", "cNLL": "nll", "cECE": "ece", "cBrier": "brier"}


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    """``config.evaluation``: the evaluation suite of an experiment.

    Attributes:
      ood_reference: the in-distribution set pooled with every OOD set.
      shift_suite: the shift suite's name (e.g. ``"digits_c"``); empty for none.
      shift_source: the in-distribution set the corruptions are applied to.
      corruptions: corruption names (``relbench.data.corruptions_lib.NAMES``).
      severities: severities, each in 1..5.
      corruption_seed: the seed of the corruptions' random draws.
      tfds_corrupted: a TFDS corruption dataset used where prepared; empty for none.
      tfds_data_dir: where it is prepared; empty for TFDS's default.
      save_predictions: also write every set's member outputs, labels and OOD flags to
        ``predictions.npz`` (``relbench evaluate-predictions`` reads it back).
    """

    ood_reference: str = "test"
    shift_suite: str = ""
    shift_source: str = "test"
    corruptions: Sequence[str] = corruptions_lib.NAMES
    severities: Sequence[int] = corruptions_lib.SEVERITIES
    corruption_seed: int = 0
    tfds_corrupted: str = ""
    tfds_data_dir: str = ""
    save_predictions: bool = False


TFDS_CORRUPTION_NAMES = {"jpeg": "jpeg_compression"}  # native name -> TFDS config prefix


def _tfds_shift_set(settings: EvaluationSettings, corruption: str, severity: int):
    """The TFDS corrupted test set for one corruption and severity, or None."""
    from relbench.data import tfds as tfds_lib  # imports TFDS: only when asked for

    name = f"{TFDS_CORRUPTION_NAMES.get(corruption, corruption)}_{severity}"
    try:
        records = tfds_lib._data_source(  # raises a UsageError if not prepared
            f"{settings.tfds_corrupted}/{name}", "test", settings.tfds_data_dir or None
        )
    except UsageError as error:
        logging.warning("using native %s/%d: %s", corruption, severity, error)
        return None
    return data_lib.EvalSet(tfds_lib.TfdsSource(records))


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
        native = corruptions_lib.corruption_suite(
            sets[settings.shift_source].source,
            settings.shift_suite,
            settings.corruptions,
            settings.severities,
            settings.corruption_seed,
        )
        for name, eval_set in native.items():
            _, corruption, severity = corruptions_lib.parse_shift_set_name(name)
            from_tfds = (
                _tfds_shift_set(settings, corruption, severity) if settings.tfds_corrupted else None
            )
            sets[name] = from_tfds or eval_set
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


def family_aggregates(results: Mapping[str, Mapping[str, float]]) -> dict[str, dict]:
    """``{suite: {cAcc, cNLL, cECE, cBrier}}``: means over every corruption x severity."""
    families: dict[str, list[str]] = {}
    for name in results:
        parsed = corruptions_lib.parse_shift_set_name(name)
        if parsed is not None:
            families.setdefault(parsed[0], []).append(name)
    return {
        family: {
            short: float(np.mean([results[n][metric] for n in names]))
            for short, metric in FAMILY_AGGREGATES.items()
        }
        for family, names in families.items()
    }


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

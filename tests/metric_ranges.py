"""The range of every metric ``results.json`` reports, and a check against it.

``tests/conftest.py`` applies ``out_of_range`` to every ``results.json`` a test writes
(through ``RunWriter.write_results``), so no metric of the suite's runs leaves its range
unnoticed. A metric the table does not name fails the check too: a new metric gets its
range here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_UNIT = (0.0, 1.0)
_NONNEGATIVE = (0.0, math.inf)
_REAL = (-math.inf, math.inf)

#: (regex over the metric name without a ``raw/`` prefix, (low, high)); first match wins.
RANGES = (
    (r"(auroc|aupr_in|aupr_out|fpr95)/.+", _UNIT),
    (r"(c?Brier|brier|soft_brier)", (0.0, 2.0)),
    (r"brier_(reliability|resolution|uncertainty)", (0.0, 2.0)),
    (r"(c?NLL|nll|soft_nll|soft_kl|mCE|rmse|crps|mean_predictive_std|mean_variance)", _NONNEGATIVE),
    (r"(predictive_entropy|expected_member_entropy|mean_entropy|mutual_information)", _NONNEGATIVE),
    (r"pairwise_kl", _NONNEGATIVE),
    (r"(mean_log_likelihood|log_likelihood)", _REAL),
    (r"(cAcc|cECE|accuracy|label_accuracy|subset_accuracy|mean_confidence|disagreement)", _UNIT),
    (r"(ece|adaptive_ece|classwise_ece|mce|rms_calibration_error|calibration_auc|aurc)", _UNIT),
    (
        r"(soft_ece|interval_calibration_error|mean_average_precision|macro_auroc|micro_auroc)",
        _UNIT,
    ),
    (r"(accuracy@coverage|oracle_accuracy@deferral)=[0-9.]+", _UNIT),
    (r"coverage_[0-9]+", _UNIT),
    (r"(micro_f1|macro_f1|micro_average_precision)", _UNIT),
    (r"(closed_set_accuracy|oscr|oscr/.+)", _UNIT),
    (r"(accuracy|ece)/group_[0-9]+", _UNIT),
    (r"(worst_group_accuracy|worst_group_ece|mean_group_accuracy)", _UNIT),
    (r"(coverage|coverage@size=[0-9+-]+|worst_size_coverage|worst_class_coverage)", _UNIT),
    (r"interval_coverage", _UNIT),
    (r"(mean_set_size|interval_width|winkler_score)", _NONNEGATIVE),
)
#: Metrics that may be NaN where they are undefined on a tiny set (no correct or no
#: wrong prediction; one class only); every other metric is finite.
MAY_BE_UNDEFINED = r"(calibration_auc|macro_auroc|mean_average_precision|micro_auroc)"


#: A regression set's NLL is that of a density: any real number.
REGRESSION_RANGES = ((r"c?(NLL|nll)", _REAL),)


def out_of_range(results: Mapping[str, Mapping[str, float]]) -> list[str]:
    """``"set: metric=value (range)"`` for every metric outside its range."""
    bad = []
    for set_name, metrics in results.items():
        regression = "rmse" in metrics or "mean_predictive_std" in metrics
        table = (REGRESSION_RANGES if regression else ()) + RANGES
        for name, value in metrics.items():
            bare = name.removeprefix("raw/")
            bounds = next((r for pattern, r in table if re.fullmatch(pattern, bare)), None)
            if bounds is None:
                bad.append(f"{set_name}: {name}={value} (no range in tests/metric_ranges.py)")
            elif math.isnan(value):
                if not re.fullmatch(MAY_BE_UNDEFINED, bare):
                    bad.append(f"{set_name}: {name}=nan")
            elif not bounds[0] <= value <= bounds[1]:
                bad.append(f"{set_name}: {name}={value!r} outside [{bounds[0]}, {bounds[1]}]")
    return bad

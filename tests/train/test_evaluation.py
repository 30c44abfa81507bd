"""The evaluation protocol's bookkeeping: which sets, mixtures, family aggregates."""

import numpy as np
import pytest

from relbench import data
from relbench.configs import evaluation_config
from relbench.errors import UsageError
from relbench.train import evaluation


def test_evaluation_sets_add_the_shift_suite():
    dataset = data.make("digits", held_out_classes=(8, 9))
    settings = evaluation.EvaluationSettings(
        shift_suite="digits_c", corruptions=("jpeg",), severities=(2, 3)
    )
    sets = evaluation.evaluation_sets(dataset, settings)
    assert list(sets) == [
        "validation",
        "test",
        "ood_noise",
        "ood_heldout",
        "digits_c/jpeg/2",
        "digits_c/jpeg/3",
    ]
    assert dataset.num_classes == 8
    assert len(sets["digits_c/jpeg/2"].source) == len(sets["test"].source)
    assert not sets["digits_c/jpeg/2"].is_ood and sets["ood_heldout"].is_ood


def test_bad_reference_or_source_is_a_usage_error():
    dataset = data.make("two_moons")
    with pytest.raises(UsageError, match="ood_reference 'val'"):
        evaluation.evaluation_sets(dataset, evaluation.EvaluationSettings(ood_reference="val"))
    with pytest.raises(UsageError, match="shift_source 'ood_far'"):
        evaluation.evaluation_sets(
            dataset, evaluation.EvaluationSettings(shift_suite="moons_c", shift_source="ood_far")
        )
    with pytest.raises(UsageError, match="no setting 'severity'"):
        evaluation_config(severity=3)


def test_family_aggregates_average_every_corruption_and_severity():
    rng = np.random.default_rng(0)
    results = {"test": {"accuracy": 0.9, "nll": 0.3, "ece": 0.05, "brier": 0.1}}
    for name in ("a_c/jpeg/1", "a_c/jpeg/5", "a_c/contrast/3", "b_c/rotation/2"):
        results[name] = {k: float(rng.uniform()) for k in ("accuracy", "nll", "ece", "brier")}
    out = evaluation.family_aggregates(results)
    assert set(out) == {"a_c", "b_c"}
    a_sets = ("a_c/jpeg/1", "a_c/jpeg/5", "a_c/contrast/3")
    assert out["a_c"]["cAcc"] == pytest.approx(np.mean([results[n]["accuracy"] for n in a_sets]))
    assert out["b_c"]["cECE"] == results["b_c/rotation/2"]["ece"]


def test_held_out_digits_are_relabelled_and_checked():
    dataset = data.make("digits", held_out_classes=(0, 5))
    labels = dataset.train.read(np.arange(len(dataset.train)))["label"]
    assert sorted(set(labels.tolist())) == list(range(8))
    with pytest.raises(UsageError, match="held_out_classes"):
        data.make("digits", held_out_classes=(11,))
    assert "ood_near" in data.make("two_moons").eval_sets


def test_a_prepared_benchmark_replaces_native_corruptions_and_fills_the_rest():
    import dataclasses

    from relbench.data import corruptions
    from relbench.data.sources import ArraySource, CorruptionBenchmark, EvalSet

    arrays = {"input": np.full((5, 8, 8, 1), 0.2, np.float32), "label": np.full(5, 3)}
    prepared = {("jpeg", 1): EvalSet(ArraySource(arrays))}
    digits = data.make("digits")
    benchmark = CorruptionBenchmark(("jpeg", "frost"), lambda c, s: prepared.get((c, s)))
    dataset = dataclasses.replace(digits, corrupted=benchmark)
    settings = evaluation.EvaluationSettings(
        shift_suite="digits_c", corruptions=("jpeg", "contrast"), severities=(1, 2)
    )
    sets = evaluation.evaluation_sets(dataset, settings)
    assert sets["digits_c/jpeg/1"] is prepared["jpeg", 1]
    for name in ("digits_c/jpeg/2", "digits_c/contrast/1"):  # not prepared, or not in it
        assert isinstance(sets[name].source, corruptions.CorruptedSource)
    off = dataclasses.replace(settings, benchmark=False)
    assert isinstance(
        evaluation.evaluation_sets(dataset, off)["digits_c/jpeg/1"].source,
        corruptions.CorruptedSource,
    )
    every = dataclasses.replace(settings, corruptions=("all",), severities=(1,))
    with pytest.raises(UsageError, match="'frost' .*no native version"):
        evaluation.evaluation_sets(dataset, every)
    assert len(evaluation.evaluation_sets(digits, every)) == len(digits.eval_sets) + len(
        corruptions.NAMES
    )

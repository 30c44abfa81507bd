"""Subpopulation shift through the loop: ERM takes the colour shortcut of the
group-shifted digits, group reweighting narrows the worst-group gap."""

import numpy as np
import pytest

from experiments import colored_digits_mlp
from relbench import data as data_lib
from relbench.data.groups import balanced_weights
from relbench.errors import UsageError
from relbench.train.loop import train_and_evaluate


def test_colored_digits_correlates_the_colour_in_training_only():
    dataset = data_lib.make("colored_digits", correlation=0.9, group_weighting="balanced")
    train, test = dataset.train.arrays, dataset.eval_sets["test"].source.arrays
    colour = lambda a: (a["input"][..., 1].sum(axis=(1, 2)) > 0).astype(int)  # noqa: E731
    assert np.mean(colour(train) == train["label"]) == pytest.approx(0.9, abs=0.03)
    assert np.mean(colour(test) == test["label"]) == pytest.approx(0.5, abs=0.06)
    np.testing.assert_array_equal(train["group"].argmax(1), 2 * train["label"] + colour(train))
    # Balanced weights: every group carries the same total weight, the mean is 1.
    per_group = train["group"].T @ train["weight"]
    np.testing.assert_allclose(per_group, len(train["weight"]) / 4, rtol=1e-5)
    with pytest.raises(UsageError, match="exactly one group"):
        balanced_weights(np.ones((3, 2), np.float32))


def test_reweighting_narrows_the_worst_group_gap_of_erm(tmp_path):
    results = {}
    for weighting in ("none", "balanced"):
        config = colored_digits_mlp.get_config("deterministic,smoke")
        with config.unlocked():
            config.dataset.group_weighting = weighting
        results[weighting] = train_and_evaluate(config, tmp_path / weighting)["test"]
    erm, reweighted = results["none"], results["balanced"]
    for r in (erm, reweighted):
        groups = [r[f"accuracy/group_{g}"] for g in range(4)]
        assert r["worst_group_accuracy"] == min(groups)
        assert r["worst_group_ece"] == max(r[f"ece/group_{g}"] for g in range(4))
    # Measured (seed 0, 2 smoke epochs): ERM 0.52 average, 0.00 worst group; reweighted
    # 0.69 average, 0.38 worst group.
    erm_gap = erm["accuracy"] - erm["worst_group_accuracy"]
    assert erm_gap > 0.3, erm
    assert reweighted["accuracy"] - reweighted["worst_group_accuracy"] < erm_gap - 0.15
    assert reweighted["worst_group_accuracy"] > erm["worst_group_accuracy"] + 0.2

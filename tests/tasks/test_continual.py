"""A class-split digits sequence: average accuracy and forgetting, and the loop on it."""

import json

import pytest

from experiments import digits_mlp
from relbench.tasks.continual import average_accuracy_and_forgetting, continual_learn


def test_average_accuracy_and_forgetting_by_hand():
    accuracy = [[0.9, 0.1, 0.0], [0.6, 0.8, 0.2], [0.5, 0.7, 0.9]]
    out = average_accuracy_and_forgetting(accuracy)
    assert out["average_accuracy"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert out["forgetting"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    assert average_accuracy_and_forgetting([[0.7]]) == {"average_accuracy": 0.7, "forgetting": 0}


def test_fine_tuning_on_split_digits_forgets_the_first_task(tmp_path):
    config = digits_mlp.get_config("deterministic,smoke")
    with config.unlocked():
        config.dataset.held_out_classes = ()
        config.evaluation.shift_suite = ""
        config.train.num_epochs = 2.0
    tasks = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    summary = continual_learn(config, tmp_path, tasks)
    (first, unseen), (after, second) = summary["accuracy"]
    # Measured: task 0 0.95 after its own training, 0.00 after task 1 (class-incremental
    # fine-tuning overwrites it); task 1 0.00 before and 0.92 after its training.
    assert first > 0.8 and second > 0.8 and unseen < 0.2 and after < first - 0.5, summary
    assert summary["forgetting"] == pytest.approx(first - after)
    assert summary["average_accuracy"] == pytest.approx((after + second) / 2)
    assert json.loads((tmp_path / "continual.json").read_text()) == summary
    assert continual_learn(config, tmp_path, tasks) == summary  # finished tasks are reused

"""The predictions file format of ``relbench evaluate-predictions`` (no evaluation run:
tests/train/test_bring_your_own.py evaluates a run's own predictions end to end)."""

import pathlib

import numpy as np
import pytest

from relbench.errors import UsageError
from relbench.metrics import predictive_log_probs
from relbench.report.runs import Run
from relbench.train.predictions import predictions_dataset, read_sets


def test_probs_and_logits_of_one_or_many_members_unpack_alike(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 10, 4)).astype(np.float32)  # [M, N, K]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 4, 10)
    np.savez(
        tmp_path / "p.npz",
        **{"test/logits": logits, "test/labels": labels, "ood/probs": probs[:, :6],
           "digits_c/contrast/1/logits": logits, "digits_c/contrast/1/labels": labels},
    )  # fmt: skip
    task, sets = read_sets(tmp_path / "p.npz")
    dataset, unpack = predictions_dataset(task, sets)
    assert list(dataset.eval_sets) == ["test", "ood", "digits_c/contrast/1"]
    assert dataset.eval_sets["ood"].is_ood and not dataset.eval_sets["test"].is_ood
    assert dataset.num_classes == 4
    inputs = dataset.eval_sets["ood"].source.arrays["input"]  # [N, M * K]
    unpacked, extras = unpack(inputs)
    assert unpacked.shape == (3, 6, 4) and extras == {}
    np.testing.assert_allclose(
        predictive_log_probs(unpacked), predictive_log_probs(logits[:, :6]), atol=1e-5
    )
    np.savez(tmp_path / "one.npz", **{"test/probs": probs[0], "test/labels": labels})
    dataset, unpack = predictions_dataset(*read_sets(tmp_path / "one.npz"))
    assert unpack(dataset.eval_sets["test"].source.arrays["input"])[0].shape == (1, 10, 4)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"test/scores": np.zeros((2, 2))}, r"^'.*' has an array 'test/scores'; name arrays"),
        ({"test/labels": np.zeros(2)}, r"^set 'test' needs exactly one of 'test/logits'"),
        (
            {"test/logits": np.zeros((2, 3)), "test/labels": np.array([0, 3])},
            r"^label 3 in set 'test' is outside \[0, 3\)",
        ),
    ],
)
def test_bad_predictions_are_one_line(arrays, message, tmp_path):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UsageError, match=message):
        predictions_dataset(*read_sets(tmp_path / "bad.npz"))


def test_report_groups_the_uci_splits_of_one_setting_like_seeds():
    def run(seed, split_seed, lr=0.1):
        config = {
            "seed": seed,
            "dataset": {"name": "table", "split_seed": split_seed},
            "model": {"name": "mlp"},
            "method": {"name": "deterministic"},
            "lr": lr,
        }
        return Run(directory=pathlib.Path("."), config=config, results={}, curves={})

    assert run(0, 0).config_key == run(1, 5).config_key
    assert run(0, 0).config_key != run(0, 0, lr=0.2).config_key

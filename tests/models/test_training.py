"""The tiny variants of the models no experiment config uses train a few steps through
the loop on mock CIFAR-10 on 4 fake devices (WRN, ResNet-50 and the LSTM train in
tests/experiments through their configs)."""

import math
import pathlib

import ml_collections
import pytest

from relbench import configs
from relbench.train.loop import train_and_evaluate

CIFAR10 = pathlib.Path(__file__).resolve().parents[2] / "experiments/cifar10_wrn28_10.py"

TINY_MODELS = {
    "resnet_cifar": {"depth": 8, "width": 4},
    "vit": {"patch_size": 8, "hidden_size": 8, "num_layers": 1, "num_heads": 2, "mlp_dim": 8},
}


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_tiny_model_trains_through_the_loop(name, tmp_path):
    config = configs.load(f"{CIFAR10}:deterministic,smoke")
    with config.unlocked():
        config.model = ml_collections.ConfigDict({"name": name, **TINY_MODELS[name]})
        config.evaluation.shift_suite, config.dataset.ood = "", {}
    results = train_and_evaluate(config, tmp_path)
    assert set(results) == {"test"}
    assert all(math.isfinite(v) for v in results["test"].values())
    log = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert sum('"train/loss"' in line for line in log) == 2  # one record per step

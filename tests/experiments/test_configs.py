"""Every experiment config x every available method: loads locked at full size, and
trains + evaluates in ``smoke`` mode (tiny model, 2 steps, mock data, 4 CPU devices)."""

import math
import pathlib

import pytest

from relbench import methods
from relbench.train import configs
from relbench.train.loop import train_and_evaluate

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
CONFIGS = sorted(p.name for p in EXPERIMENTS.glob("*.py"))


def load(name, arg):
    return configs.load(f"{EXPERIMENTS / name}:{arg}")


def test_every_config_file_is_tested():
    assert {
        "cifar10_wrn28_10.py",
        "cifar100_wrn28_10.py",
        "imagenet_resnet50.py",
        "digits_mlp.py",
    } <= set(CONFIGS)


@pytest.mark.parametrize("method", methods.METHODS.names())
@pytest.mark.parametrize("name", CONFIGS)
def test_full_size_config_loads_locked(name, method):
    config = load(name, method)
    assert config.is_locked and config.method.name == method
    with pytest.raises(AttributeError):
        config.train.num_epoch = 1  # a misspelt key is an error, not a new field
    # Fields the method sets never also appear in config.model.
    hparams = {k: v for k, v in config.method.items() if k != "name"}
    assert not set(methods.make(method, **hparams).model_kwargs) & set(config.model)


@pytest.mark.parametrize("method", methods.METHODS.names())
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_config_trains_and_evaluates(name, method, tmp_path):
    config = load(name, f"{method},smoke")
    results = train_and_evaluate(config, tmp_path)
    assert "test" in results
    for set_name, metrics in results.items():
        assert metrics and all(math.isfinite(v) for v in metrics.values()), set_name


def test_ub_cifar_recipe_values():
    config = load("cifar10_wrn28_10.py", "deterministic")
    assert config.train.global_batch_size == 512 and config.train.num_epochs == 200
    assert config.optimizer.learning_rate == pytest.approx(0.1 * 512 / 128)
    assert config.optimizer.weight_decay == pytest.approx(2 * 2e-4)  # L2 2e-4 in the loss
    assert config.optimizer.decay_epochs_fraction == pytest.approx((0.3, 0.6, 0.8))
    assert config.optimizer.warmup_steps == math.ceil(50_000 / 512)
    assert config.model.depth == 28 and config.model.width_multiplier == 10
    assert len(config.dataset.severities) == 5 and tuple(config.dataset.corruptions) == ("all",)
    c100 = load("cifar100_wrn28_10.py", "deterministic")
    assert c100.optimizer.weight_decay == pytest.approx(2 * 3e-4)


def test_method_recipes_apply_only_to_their_method():
    dropout = load("cifar10_wrn28_10.py", "mc_dropout")
    assert dropout.method.dropout_rate == 0.1 and "dropout_rate" not in dropout.model
    deterministic = load("cifar10_wrn28_10.py", "deterministic")
    assert deterministic.model.dropout_rate == 0.0 and deterministic.train.num_epochs == 200

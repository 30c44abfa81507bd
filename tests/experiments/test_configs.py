"""Every experiment config x every available method: loads locked at full size, builds
and traces its train and eval steps in ``smoke`` mode; every config trains and
evaluates end to end in ``smoke`` mode (tiny model, 2 steps, mock data, 4 CPU devices),
and every method does so on the CIFAR-10 WRN config.

Compiling is what costs on CPU, so the full config x method matrix is traced
(``jax.eval_shape``: shapes, layer types and shardable structure, no compile) while one
row and one column of it compile and run.
"""

import functools
import math
import pathlib

import jax
import numpy as np
import pytest

from relbench import configs, data, methods
from relbench.errors import UsageError
from relbench.train import sharding
from relbench.train.loop import (
    build,
    init_state,
    make_eval_step,
    make_train_step,
    train_and_evaluate,
)

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
CONFIGS = sorted(p.name for p in EXPERIMENTS.glob("*.py"))
METHODS = methods.METHODS.names()


# The benchmark recipes take every method; a config written for one kind of task may
# refuse a method with a UsageError (e.g. a regression config and a classification-only
# method), and that pairing is skipped.
RECIPES = {
    "cifar10_wrn28_10.py",
    "cifar100_wrn28_10.py",
    "imagenet_resnet50.py",
    "clinc_oos_lstm.py",
}


def load(name, arg):
    return configs.load(f"{EXPERIMENTS / name}:{arg}")


def load_or_skip(name, arg):
    try:
        return load(name, arg)
    except UsageError as error:
        if name in RECIPES:
            raise
        pytest.skip(f"{name} refuses {arg}: {error}")


def test_every_config_file_is_tested():
    assert {
        "cifar10_wrn28_10.py",
        "cifar100_wrn28_10.py",
        "imagenet_resnet50.py",
        "digits_mlp.py",
    } <= set(CONFIGS)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CONFIGS)
def test_full_size_config_loads_locked(name, method):
    config = load_or_skip(name, method)
    assert config.is_locked and config.method.name == method
    with pytest.raises(AttributeError):
        config.train.num_epoch = 1  # a misspelt key is an error, not a new field
    # Fields the method sets never also appear in a recipe's config.model.
    hparams = {k: v for k, v in config.method.items() if k != "name"}
    if name in RECIPES:
        assert not set(methods.make(method, **hparams).model_kwargs) & set(config.model)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_config_builds_and_traces(name, method):
    try:
        trace_smoke(name, method)
    except UsageError as error:
        if name in RECIPES:
            raise
        pytest.skip(f"{name} refuses {method}: {error}")


def trace_smoke(name, method):
    exp = build(load_or_skip(name, f"{method},smoke"))
    key = jax.random.key(0)
    state = jax.eval_shape(functools.partial(init_state, exp), key)
    batches = data.TrainBatches(
        exp.dataset.train,
        exp.settings.global_batch_size,
        0,
        exp.dataset.label_classes,
        augment=exp.dataset.train_augment,
    )
    batch = batches(0)
    new_state, metrics = jax.eval_shape(make_train_step(exp), state, batch, key)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state.params) == jax.tree.map(
        lambda a: (a.shape, a.dtype), state.params
    )
    assert metrics["loss"].shape == ()
    eval_batch = {**batch, "mask": np.ones(len(batch["label"]), np.float32)}
    mesh = sharding.data_mesh()
    eval_step = make_eval_step(exp, mesh, jax.tree.map(lambda _: sharding.replicated(mesh), state))
    for is_ood in (False, True):
        jax.eval_shape(functools.partial(eval_step, is_ood=is_ood), state, eval_batch, key)


def run_smoke(name, method, workdir):
    results = train_and_evaluate(load(name, f"{method},smoke"), workdir)
    assert "test" in results
    # Some metrics are undefined on 16 random examples (calibration AUC with no correct
    # prediction); the core ones never are.
    core = {"accuracy", "nll", "brier", "ece", "mean_confidence", "auroc/max_prob"}
    for set_name, metrics in results.items():
        assert any(math.isfinite(v) for v in metrics.values()), set_name
        assert all(math.isfinite(metrics[k]) for k in core & set(metrics)), set_name


@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_config_trains_and_evaluates(name, tmp_path):
    run_smoke(name, "deterministic", tmp_path)


# Every method is traced on every config (test_smoke_config_builds_and_traces) and
# trained on a CNN in tests/methods; on the WRN recipe, these train: spectral-normalized
# convolutions with the epoch hook, folded BatchEnsemble convolutions, vmapped members.
@pytest.mark.parametrize("method", ["sngp", "batchensemble", "deep_ensemble"])
def test_conv_methods_train_on_the_cifar10_wrn_smoke_config(method, tmp_path):
    run_smoke("cifar10_wrn28_10.py", method, tmp_path)


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
    assert deterministic.train.num_epochs == 200
    assert deterministic.optimizer.learning_rate == pytest.approx(0.4)
    if "sngp" in METHODS:
        sngp = load("cifar10_wrn28_10.py", "sngp")
        assert sngp.method.norm_bound == 6.0 and sngp.method.mean_field_factor == 20.0
        assert sngp.optimizer.learning_rate == pytest.approx(0.08 * 512 / 128)
        assert sngp.train.num_epochs == 250

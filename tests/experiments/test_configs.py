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
from relbench.methods import likelihoods
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


# A config may refuse a method only where the method has no meaning for the
# likelihood of the config's dataset (``methods.UNDEFINED``: heteroscedastic on
# regression data); every other pairing must build and trace.
REGRESSION = {"diabetes_mlp.py", "heteroscedastic_toy_mlp.py"}
MULTILABEL = {"multilabel_mlp.py"}

# The NNX MLP builds the NNX twins of a method's layer types; these methods' types have
# none yet (vmapped independent members, the MIMO head): one UsageError names the type.
NO_NNX_TWIN = {("digits_nnx_mlp.py", "deep_ensemble"), ("digits_nnx_mlp.py", "mimo")}
# Trained through the loop, twice, by tests/nnx/test_nnx_model_loop.py.
TRAINED_ELSEWHERE = {"digits_nnx_mlp.py"}

# Set by the method (layer types, dropout rate, member count), never by config.model.
METHOD_FIELDS = {"layers", "dropout_rate", "ensemble_size"}


def load(name, arg):
    return configs.load(f"{EXPERIMENTS / name}:{arg}")


def likelihood_of(name):
    if name in MULTILABEL:
        return likelihoods.Bernoulli()
    return likelihoods.Gaussian() if name in REGRESSION else likelihoods.CATEGORICAL


def make_method_or_skip(name, method, hparams):
    """The config's method for its dataset's likelihood; an UNDEFINED pairing is
    refused with its reason, and skipped."""
    likelihood = likelihood_of(name)
    why = methods.UNDEFINED.get((method, likelihood.name))
    if why is None:
        return methods.make(method, likelihood=likelihood, **hparams)
    with pytest.raises(UsageError, match="is not defined for the"):
        methods.make(method, likelihood=likelihood, **hparams)
    pytest.skip(f"{name} refuses {method}: {why}")


def test_every_config_file_is_tested():
    assert {
        "cifar10_wrn28_10.py",
        "cifar100_wrn28_10.py",
        "imagenet_resnet50.py",
        "digits_mlp.py",
        "digits_cnn.py",
        "diabetes_mlp.py",
        "heteroscedastic_toy_mlp.py",
        "multilabel_mlp.py",
    } <= set(CONFIGS)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CONFIGS)
def test_full_size_config_loads_locked(name, method):
    config = load(name, method)
    assert config.is_locked and config.method.name == method
    with pytest.raises(AttributeError):
        config.train.num_epoch = 1  # a misspelt key is an error, not a new field
    # config.model names widths and depths only: the method sets the rest.
    assert not METHOD_FIELDS & set(config.model)
    hparams = {k: v for k, v in config.method.items() if k != "name"}
    make_method_or_skip(name, method, hparams)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_config_builds_and_traces(name, method):
    config = load(name, f"{method},smoke")
    assert not METHOD_FIELDS & set(config.model)
    if (name, method) in NO_NNX_TWIN:
        with pytest.raises(UsageError, match="has no NNX twin"):
            trace_smoke(build(config))
        pytest.skip(f"{name}: {method}'s layer types have no NNX twin")
    try:
        exp = build(config)
    except UsageError as error:
        likelihood = likelihoods.for_task(data.make(**config.dataset).task)
        why = methods.UNDEFINED.get((method, likelihood.name))
        if why is None:
            raise
        assert why in str(error)
        pytest.skip(f"{name} refuses {method}: {why}")
    # The dataset's task picks the likelihood (and REGRESSION lists the right configs).
    assert exp.likelihood == likelihoods.for_task(exp.dataset.task) == likelihood_of(name)
    trace_smoke(exp)


def trace_smoke(exp):
    key = jax.random.key(0)
    state = jax.eval_shape(functools.partial(init_state, exp), key)
    batches = data.TrainBatches(
        exp.dataset.train,
        exp.settings.global_batch_size,
        0,
        exp.dataset.label_classes,
        augment=exp.dataset.train_augment,
        num_labels=exp.dataset.num_labels,
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


def run_smoke(name, method, workdir, **hparams):
    config = load(name, f"{method},smoke")
    with config.unlocked():
        config.method.update(hparams)
    results = train_and_evaluate(config, workdir)
    assert "test" in results
    # Some metrics are undefined on 16 random examples (calibration AUC with no correct
    # prediction); the core ones never are.
    core = {"accuracy", "nll", "brier", "ece", "mean_confidence", "auroc/max_prob"}
    for set_name, metrics in results.items():
        assert any(math.isfinite(v) for v in metrics.values()), set_name
        assert all(math.isfinite(metrics[k]) for k in core & set(metrics)), set_name


@pytest.mark.parametrize("name", [c for c in CONFIGS if c not in TRAINED_ELSEWHERE])
def test_smoke_config_trains_and_evaluates(name, tmp_path):
    run_smoke(name, "deterministic", tmp_path)


# Every method is traced on every config (test_smoke_config_builds_and_traces) and
# trained on a CNN in tests/methods; on the WRN recipe, these train: spectral-normalized
# convolutions with the epoch hook, folded BatchEnsemble convolutions (not the method's
# default: folding is what the CPU runs faster), vmapped members.
@pytest.mark.parametrize(
    "method, hparams",
    [("sngp", {}), ("batchensemble", {"fold_conv_alpha": True}), ("deep_ensemble", {})],
)
def test_conv_methods_train_on_the_cifar10_wrn_smoke_config(method, hparams, tmp_path):
    run_smoke("cifar10_wrn28_10.py", method, tmp_path, **hparams)


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

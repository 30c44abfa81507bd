"""Every experiment config x every available method: loads locked at full size, builds
and traces its train and eval steps in ``smoke`` mode; every config trains and
evaluates end to end in ``smoke`` mode (tiny model, 2 steps, mock data, 4 CPU devices).
That every method *learns* on the digits MLP and CNN is the learning gate's
(``test_learning_gate.py``); the only refusals here are ``methods.UNDEFINED``'s, each
checked for its reason (never a skip). Every section has every keyword argument of
its factory, and each shift suite reports its family entry over every set it has.

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

from relbench import configs, data, methods, models
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
NO_NNX_TWIN = {("digits_nnx_mlp.py", m) for m in ("deep_ensemble", "mimo", "multiswag")}
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


def make_method(name, method, hparams):
    """The config's method for its dataset's likelihood, or None for an UNDEFINED
    pairing, after checking that it is refused with its reason."""
    likelihood = likelihood_of(name)
    why = methods.UNDEFINED.get((method, likelihood.name))
    if why is None:
        return methods.make(method, likelihood=likelihood, **hparams)
    with pytest.raises(UsageError, match="is not defined for the"):
        methods.make(method, likelihood=likelihood, **hparams)
    return None


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
    make_method(name, method, hparams)
    # Every section has every keyword argument of its factory (settable from the CLI).
    assert set(data.DATASETS.defaults(config.dataset.name)) <= set(config.dataset)
    model_fields = models.MODELS.defaults(config.model.name, exclude=("layers", "num_classes"))
    assert {k for k, v in model_fields.items() if not callable(v)} <= set(config.model)
    assert set(methods.hyperparameters(method)) <= set(config.method)
    assert set(configs.evaluation_config()) <= set(config.evaluation)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_config_builds_and_traces(name, method):
    config = load(name, f"{method},smoke")
    assert not METHOD_FIELDS & set(config.model)
    if (name, method) in NO_NNX_TWIN:  # refused with its reason: nothing to trace
        with pytest.raises(UsageError, match="has no NNX twin"):
            trace_smoke(build(config))
        return
    likelihood = likelihoods.for_task(data.make(**config.dataset).task)
    why = methods.UNDEFINED.get((method, likelihood.name))
    if why is not None:  # refused with its reason: nothing to trace
        with pytest.raises(UsageError) as error:
            build(config)
        assert why in str(error.value)
        return
    exp = build(config)
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
    # Every metric of results.json is in its range (tests/conftest.py checks each one
    # written); the sets are the config's, and each shift suite has its family entry.
    results = train_and_evaluate(config, workdir)
    assert "test" in results
    check_shift_families(config, results)
    return results


def check_shift_families(config, results):
    """The shift suite's sets are every corruption x severity evaluated, and its family
    entry holds cAcc, cNLL, cECE and cBrier (their means over exactly those sets)."""
    suite = config.evaluation.shift_suite
    if not suite:
        return
    sets = [n for n in results if n.startswith(f"{suite}/")]
    corruptions = {n.split("/")[1] for n in sets}
    severities = {int(n.split("/")[2]) for n in sets}
    assert severities == set(config.evaluation.severities)
    if "all" not in config.evaluation.corruptions:
        assert corruptions == set(config.evaluation.corruptions)
    assert len(sets) == len(corruptions) * len(severities)
    family = results[suite]
    for short, metric in (("cAcc", "accuracy"), ("cNLL", "nll"), ("cECE", "ece")):
        assert family[short] == pytest.approx(np.mean([results[n][metric] for n in sets]))
    assert "cBrier" in family


# digits_cnn.py trains end to end in the learning gate (every method).
SMOKE_RUNS = [name for name in CONFIGS if name not in TRAINED_ELSEWHERE | {"digits_cnn.py"}]


@pytest.mark.parametrize("name", SMOKE_RUNS)
def test_smoke_config_trains_and_evaluates(name, tmp_path):
    results = run_smoke(name, "deterministic", tmp_path)
    if name == "cifar10_wrn28_10.py":  # CIFAR-10-C, read from TFDS (mock data)
        assert {n for n in results if n.startswith("cifar10_c/")} == {
            f"cifar10_c/{c}/{s}" for c in ("gaussian_noise", "frost") for s in (1, 5)
        }
        assert {"cAcc", "cNLL", "cECE", "cBrier"} <= set(results["cifar10_c"])
    # One member: the between-member terms are constant 0, so they are not reported.
    assert not any("mutual_information" in k for m in results.values() for k in m)


# Every method is traced on every config (test_smoke_config_builds_and_traces) and
# learns on the digits CNN (the learning gate); on the WRN recipe, folded BatchEnsemble
# convolutions train (not the method's default: folding is what the CPU runs faster).
def test_folded_batchensemble_trains_on_the_cifar10_wrn_smoke_config(tmp_path):
    run_smoke("cifar10_wrn28_10.py", "batchensemble", tmp_path, fold_conv_alpha=True)


def test_ub_cifar_recipe_values():
    config = load("cifar10_wrn28_10.py", "deterministic")
    assert config.train.global_batch_size == 512 and config.train.num_epochs == 200
    assert config.optimizer.learning_rate == pytest.approx(0.1 * 512 / 128)
    assert config.optimizer.weight_decay == pytest.approx(2 * 2e-4)  # L2 2e-4 in the loss
    assert config.optimizer.decay_epochs_fraction == pytest.approx((0.3, 0.6, 0.8))
    assert config.optimizer.warmup_steps == math.ceil(50_000 / 512)
    assert config.model.depth == 28 and config.model.width_multiplier == 10
    assert tuple(config.evaluation.severities) == (1, 2, 3, 4, 5)
    assert tuple(config.evaluation.corruptions) == ("all",) and config.evaluation.benchmark
    assert config.evaluation.shift_suite == "cifar10_c"
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


def test_every_dataset_keyword_can_be_set_from_the_command_line():
    config = load("two_moons_mlp.py", "deterministic,smoke")
    configs.apply_override(config, "dataset.ood_radius", "(4.0, 6.0)")
    assert config.dataset.ood_radius == (4.0, 6.0)
    data.make(**config.dataset)  # the factory takes it
    with pytest.raises(UsageError, match="unknown key config.dataset.ood_radiu;"):
        configs.apply_override(config, "dataset.ood_radiu", "(4.0, 6.0)")

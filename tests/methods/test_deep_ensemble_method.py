"""deep_ensemble: one vectorized program equals M members trained one at a time."""

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import methods, models
from relbench.errors import UsageError
from relbench.methods.likelihoods import CATEGORICAL
from relbench.models import CNN
from relbench.train import optimizers, sharding
from relbench.train.loop import (
    Experiment,
    LoopSettings,
    build,
    init_state,
    make_train_step,
    train_and_evaluate,
)
from relbench.train.state import TrainState
from tests.methods.smoke import smoke_config, train_and_check_members

M, B, K, STEPS = 3, 8, 4, 3


def _experiment(method, model):
    """The method's experiment: momentum SGD with weight decay on its decay mask."""
    dataset = types.SimpleNamespace(train=range(64))  # the step only needs len(train)
    optimizer = optimizers.make(
        total_steps=STEPS, decay_mask=method.decay_mask, learning_rate=0.1, weight_decay=1e-3
    )
    return Experiment(dataset, CATEGORICAL, method, model, optimizer, LoopSettings(), STEPS, 0)


def _train(exp, variables, batches):
    variables = dict(variables)
    params = variables.pop("params")
    state = TrainState(jnp.zeros((), jnp.int32), params, exp.optimizer.init(params), variables)
    step = jax.jit(make_train_step(exp))
    for batch in batches:
        state, _ = step(state, batch, jax.random.key(7))
    return state


@pytest.mark.parametrize("unroll_conv", [False, True])
def test_vectorized_ensemble_equals_members_trained_one_at_a_time(unroll_conv):
    """A CNN (conv, batch norm, dense, head) with momentum SGD and weight decay."""
    ensemble_method = methods.make("deep_ensemble", ensemble_size=M, unroll_conv=unroll_conv)
    single_method = methods.make("deterministic")
    ensemble_layers = ensemble_method.layers(models.default_layers("cnn"))
    ensemble = CNN(K, features=(4,), hidden_size=8, layers=ensemble_layers)
    single = CNN(
        K, features=(4,), hidden_size=8, layers=single_method.layers(models.default_layers("cnn"))
    )
    keys = jax.random.split(jax.random.key(0), STEPS)
    batches = [
        {
            "input": jax.random.normal(k, (B, 8, 8, 1)),
            "label": jax.random.randint(jax.random.fold_in(k, 1), (B,), 0, K),
        }
        for k in keys
    ]
    variables = ensemble.init(jax.random.key(1), batches[0]["input"], train=False)
    assert all(leaf.shape[0] == M for leaf in jax.tree.leaves(variables))
    vectorized = _train(_experiment(ensemble_method, ensemble), variables, batches)
    single_exp = _experiment(single_method, single)
    for m in range(M):
        member = jax.tree.map(lambda a, m=m: a[m], variables)
        alone = _train(single_exp, member, batches)
        jax.tree.map(
            lambda v, a, m=m: np.testing.assert_allclose(v[m], a, rtol=1e-5, atol=1e-6),
            (vectorized.params, vectorized.collections),
            (alone.params, alone.collections),
        )
    logits, _ = ensemble_method.predict_fn(ensemble.apply, vectorized, batches[0]["input"], None)
    assert logits.shape == (M, B, K)


def test_mlp_trains_and_predicts_m_distinct_members(tmp_path):
    train_and_check_members(smoke_config("deep_ensemble", ensemble_size=3), tmp_path, members=3)


def _with_model_axis(size: int, method: str = "deep_ensemble", **hparams):
    config = smoke_config(method, **hparams)
    with config.unlocked():
        config.train.model_axis_size = size
    return config


def _state_sharding(config, mesh):
    exp = build(config)
    init = functools.partial(init_state, exp)
    shape = jax.eval_shape(init, jax.random.key(0))
    return init, sharding.state_sharding(mesh, shape, exp.method.partition_rules)


def test_model_axis_splits_the_members_and_trains_like_replicated_members(tmp_path):
    """On the 4 fake devices: model_axis_size=2 puts 2 of the 4 members on each
    device (batches on the other 2) and gives the replicated run's results."""
    config = _with_model_axis(2, ensemble_size=4)
    mesh = sharding.data_mesh(2)
    assert dict(mesh.shape) == {"data": 2, "model": 2}
    init, shardings = _state_sharding(config, mesh)
    state = jax.jit(init, out_shardings=shardings)(jax.random.key(0))
    for leaf in jax.tree.leaves((state.params, state.opt_state)):
        if leaf.ndim:
            assert leaf.shape[0] == 4 and leaf.addressable_shards[0].data.shape[0] == 2
    assert state.step.sharding.is_fully_replicated

    split = train_and_evaluate(config, tmp_path / "split")
    replicated = train_and_evaluate(_with_model_axis(1, ensemble_size=4), tmp_path / "whole")
    assert split.keys() == replicated.keys()
    for set_name, metrics in replicated.items():
        for name, value in metrics.items():
            np.testing.assert_allclose(split[set_name][name], value, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "size,hparams,match",
    [
        (3, {"ensemble_size": 3}, "model_axis_size 3 does not divide the 4 devices"),
        # The first leaf the member rule splits: its 3 members do not split over 2.
        (2, {"ensemble_size": 3}, r"params/\S+ \(3, [^)]*\) cannot be split over 2 devices"),
    ],
)
def test_bad_model_axis_is_one_clear_error(size, hparams, match, tmp_path):
    with pytest.raises(UsageError, match=match):
        train_and_evaluate(_with_model_axis(size, **hparams), tmp_path)


def test_a_method_without_partition_rules_is_replicated_on_the_model_axis():
    """mc_dropout names no leaf for the model axis: its whole state is replicated."""
    config = _with_model_axis(2, "mc_dropout")
    _, shardings = _state_sharding(config, sharding.data_mesh(2))
    assert all(s.is_fully_replicated for s in jax.tree.leaves(shardings))

"""deep_ensemble: one vectorized program equals M members trained one at a time."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import methods
from relbench.models import CNN
from relbench.train import optimizers
from relbench.train.loop import Experiment, LoopSettings, make_train_step
from relbench.train.state import TrainState
from tests.methods.smoke import smoke_config, train_and_check_members

M, B, K, STEPS = 3, 8, 4, 3


def _experiment(method, model, optimizer):
    dataset = types.SimpleNamespace(train=range(64))  # the step only needs len(train)
    return Experiment(dataset, method, model, optimizer, LoopSettings(), STEPS, 0)


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
    optimizer = optimizers.make(total_steps=STEPS, learning_rate=0.1, weight_decay=1e-3)
    ensemble_method = methods.make("deep_ensemble", ensemble_size=M, unroll_conv=unroll_conv)
    ensemble = CNN(K, features=(4,), hidden_size=8, **ensemble_method.model_kwargs)
    single = CNN(K, features=(4,), hidden_size=8)
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
    vectorized = _train(_experiment(ensemble_method, ensemble, optimizer), variables, batches)
    single_exp = _experiment(methods.make("deterministic"), single, optimizer)
    for m in range(M):
        member = jax.tree.map(lambda a, m=m: a[m], variables)
        alone = _train(single_exp, member, batches)
        jax.tree.map(
            lambda v, a, m=m: np.testing.assert_allclose(v[m], a, rtol=1e-5, atol=1e-6),
            (vectorized.params, vectorized.collections),
            (alone.params, alone.collections),
        )
    logits, _ = ensemble_method.predict_fn(
        ensemble.apply,
        {"params": vectorized.params, **vectorized.collections},
        batches[0]["input"],
        None,
    )
    assert logits.shape == (M, B, K)


def test_mlp_trains_and_predicts_m_distinct_members(tmp_path):
    train_and_check_members(smoke_config("deep_ensemble", ensemble_size=3), tmp_path, members=3)

"""mimo: input shuffles, the stacked input and M-head layout, [M, B, K], smoke run."""

import collections
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import methods, models
from relbench.errors import UsageError
from relbench.models import MLP
from relbench.models.mimo import MIMOHead, mimo_indices, repeated_inputs, stack_member_inputs
from tests.methods.smoke import smoke_config, train_and_check_members

M, B = 3, 8


@pytest.mark.parametrize("repetitions,rho", [(1, 0.0), (2, 0.0), (2, 0.5), (1, 1.0)])
def test_every_member_sees_every_example_r_times_and_shares_rho_of_slots(repetitions, rho):
    rows = np.asarray(mimo_indices(jax.random.key(0), B, M, repetitions, rho))
    assert rows.shape == (M, repetitions * B)
    for member in rows:
        assert collections.Counter(member.tolist()) == {i: repetitions for i in range(B)}
    shared = int(repetitions * B * (1 - rho))
    np.testing.assert_array_equal(
        rows[:, shared:], np.broadcast_to(rows[0, shared:], rows[:, shared:].shape)
    )
    if rho == 0.0:
        assert not np.array_equal(rows[0], rows[1])  # independent shuffles


def test_stacked_inputs_put_member_m_in_channel_block_m():
    x = jax.random.normal(jax.random.key(0), (M, B, 4, 4, 2))
    stacked = stack_member_inputs(x)
    assert stacked.shape == (B, 4, 4, M * 2)
    for m in range(M):
        np.testing.assert_array_equal(stacked[..., 2 * m : 2 * m + 2], x[m])
    np.testing.assert_array_equal(
        repeated_inputs(x[0], M), stack_member_inputs(jnp.stack([x[0]] * M))
    )


def test_head_m_reads_its_own_block_of_outputs():
    features = jax.random.normal(jax.random.key(0), (B, 5))
    head = MIMOHead(4, ensemble_size=M)
    variables = head.init(jax.random.key(1), features, train=False)
    logits, _ = head.apply(variables, features, train=False)
    dense = variables["params"]["DenseHead_0"]["Dense_0"]  # the one head of M * K outputs
    full = features @ dense["kernel"] + dense["bias"]
    for m in range(M):
        np.testing.assert_allclose(
            logits[m * B : (m + 1) * B], full[:, 4 * m : 4 * m + 4], rtol=1e-6
        )


def test_loss_uses_each_members_own_labels_and_predict_gives_m_b_k():
    method = methods.make("mimo", ensemble_size=M, input_repetition_probability=0.0)
    model = MLP(5, hidden_sizes=(8,), layers=method.layers(models.default_layers("mlp")))
    x = jax.random.normal(jax.random.key(0), (B, 6))
    variables = model.init(jax.random.key(1), method.init_inputs(x[:1]), train=False)
    state = types.SimpleNamespace(variables=variables)
    logits, _ = method.predict_fn(model.apply, state, x, None)
    assert logits.shape == (M, B, 5)
    batch = {"input": x, "label": jnp.arange(B) % 5}
    rngs = {"mimo": jax.random.key(2)}
    loss, _ = method.loss_fn(model.apply, variables, batch, rngs, step=0, num_train_examples=B)
    rows = mimo_indices(rngs["mimo"], B, M, 1, 0.0)
    (out, _), _ = model.apply(variables, stack_member_inputs(x[rows]), train=True, mutable=[])
    member_logits = out[0].reshape(M, B, 5)
    labels = np.asarray(batch["label"])[np.asarray(rows)]
    log_p = jax.nn.log_softmax(member_logits)
    want = -np.mean(np.take_along_axis(np.asarray(log_p), labels[..., None], -1))
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_bad_hyperparameters_are_usage_errors():
    with pytest.raises(UsageError, match="batch_repetitions"):
        methods.make("mimo", batch_repetitions=0)
    with pytest.raises(UsageError, match="input_repetition_probability"):
        methods.make("mimo", input_repetition_probability=1.5)


def test_mlp_trains_and_predicts_m_distinct_members(tmp_path):
    config = smoke_config("mimo", ensemble_size=3, batch_repetitions=2)
    train_and_check_members(config, tmp_path, members=3)

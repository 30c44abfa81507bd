"""The Bayesian LSTM cell: nn.RNN unrolls it exactly as a Python loop does, with one
weight sample per sequence, and records its KL once."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench.layers import variational as vl

H, D, T, B = 4, 3, 5, 2


class PythonLoop(nn.Module):
    """The naive reference: initialize the carry, then call the cell step by step."""

    deterministic: bool = False

    @nn.compact
    def __call__(self, xs):
        cell = vl.LSTMCellReparameterization(H, deterministic=self.deterministic, name="cell")
        carry = cell.initialize_carry(jax.random.key(0), xs[:, 0].shape)
        outputs = []
        for t in range(xs.shape[1]):
            carry, y = cell(carry, xs[:, t])
            outputs.append(y)
        return carry, jnp.stack(outputs, axis=1)  # T x [B, H] -> [B, T, H]


def numpy_lstm(xs, kernel, bias):
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    c = h = np.zeros((xs.shape[0], H))
    outputs = []
    for t in range(xs.shape[1]):
        i, f, g, o = np.split(np.concatenate([xs[:, t], h], -1) @ kernel + bias, 4, -1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, 1)


@pytest.fixture(scope="module")
def setup():
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    loop = PythonLoop()
    variables = loop.init({"params": jax.random.key(2), "variational": jax.random.key(3)}, xs)
    params = variables["params"]["cell"]
    # A visible posterior spread, so that a wrong weight sample would show.
    params = {**params, "kernel_raw_scale": params["kernel_raw_scale"] + 2.0}
    return xs, params


def test_nn_rnn_matches_python_loop_and_numpy_reference(setup):
    xs, params = setup
    rngs = {"variational": jax.random.key(4)}
    rnn = nn.RNN(vl.LSTMCellReparameterization(H), return_carry=True)
    (_, h, key), ys = rnn.apply({"params": {"cell": params}}, xs, rngs=rngs)
    (_, _, loop_key), loop_ys = PythonLoop().apply({"params": {"cell": params}}, xs, rngs=rngs)
    np.testing.assert_allclose(ys, loop_ys, atol=1e-6)
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(loop_key))
    assert key.shape == (B,) and bool(jnp.all(key == key[0]))  # one key, per example
    key = key[0]
    # One kernel for all steps: the one the carried key selects.
    scale = vl.posterior_scale(params["kernel_raw_scale"])
    kernel = params["kernel_loc"] + vl.gaussian_perturbation(key, scale)
    reference = numpy_lstm(np.asarray(xs), np.asarray(kernel), np.asarray(params["bias"]))
    np.testing.assert_allclose(ys, reference, atol=1e-5)
    np.testing.assert_allclose(h, reference[:, -1], atol=1e-5)
    # A different sequence key gives different weights.
    other = rnn.apply({"params": {"cell": params}}, xs, rngs={"variational": jax.random.key(5)})
    assert not np.allclose(other[1], ys, atol=1e-3)


def test_padded_sequences_end_at_their_lengths(setup):
    xs, params = setup
    rngs = {"variational": jax.random.key(4)}
    rnn = nn.RNN(vl.LSTMCellReparameterization(H), return_carry=True)
    (_, h, _), ys = rnn.apply(
        {"params": {"cell": params}}, xs, seq_lengths=jnp.array([3, 5]), rngs=rngs
    )
    np.testing.assert_allclose(h, jnp.stack([ys[0, 2], ys[1, 4]]), atol=1e-6)


def test_deterministic_cell_uses_the_posterior_mean(setup):
    xs, params = setup
    rnn = nn.RNN(vl.LSTMCellReparameterization(H, deterministic=True))
    ys = rnn.apply({"params": {"cell": params}}, xs)
    reference = numpy_lstm(
        np.asarray(xs), np.asarray(params["kernel_loc"]), np.asarray(params["bias"])
    )
    np.testing.assert_allclose(ys, reference, atol=1e-5)


def test_kl_recorded_once_per_sequence_in_closed_form(setup):
    xs, params = setup
    rnn = nn.RNN(vl.LSTMCellReparameterization(H))
    _, state = rnn.apply(
        {"params": {"cell": params}},
        xs,
        rngs={"variational": jax.random.key(4)},
        mutable=["losses"],
    )
    expected = vl.NormalPrior().kl(
        params["kernel_loc"], vl.posterior_scale(params["kernel_raw_scale"])
    )
    np.testing.assert_allclose(state["losses"]["cell"]["kl"], expected, rtol=1e-6)

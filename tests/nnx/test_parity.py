"""Linen and NNX modules of every layer: same parameters and key -> same outputs,
gradients and state updates (rtol 1e-6)."""

from __future__ import annotations

import functools
import unittest.mock

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, traverse_util

from relbench import nnx as N
from relbench.layers import SpectralStats
from relbench.layers import variational as V
from tests.nnx.cases import CASES, B, Case, D, F

RTOL, ATOL = 1e-6, 1e-7


def flat(tree, rename=None) -> dict:
    """A nested dict -> ``{path: leaf}``, Linen names renamed to NNX attribute names; a
    sown tuple ``(value,)`` becomes its value."""
    rename = rename or {}
    out = {}
    for path, leaf in traverse_util.flatten_dict(dict(tree)).items():
        if isinstance(leaf, tuple):  # sown once per call: (value,)
            (leaf,) = leaf
        out[tuple(rename.get(p, p) for p in path)] = leaf
    return out


def nested(flat_tree: dict) -> dict:
    return traverse_util.unflatten_dict(flat_tree)


def scalar(outputs) -> jax.Array:
    """A loss that every output (logits and extras) reaches."""
    return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(outputs))


def linen_run(case: Case, variables, x, key, kwargs, gradients: bool):
    """Outputs, parameter gradients (training only) and collection updates of the Linen
    module (traced inside the test's one ``jit``)."""

    def objective(params):
        out, updates = case.linen.apply(
            {**variables, "params": params},
            x,
            **kwargs,
            rngs={s: key for s in case.streams},
            mutable=True,
        )
        return scalar(out), (out, {c: v for c, v in updates.items() if c != "params"})

    params = variables.get("params", {})
    if not gradients:
        out, updates = objective(params)[1]
        return out, None, updates
    grads, (out, updates) = jax.grad(objective, has_aux=True)(params)
    return out, grads, updates


def nnx_run(case: Case, variables, x, key, *, evaluate: bool):
    """The NNX twin given the Linen variables: outputs, gradients (training only), its
    state after the call and before it (traced inside the test's one ``jit``)."""
    model = case.make_nnx(nnx.Rngs(params=1))  # its own initial values are overwritten
    nnx.update(model, nested(drop_collection(flat(variables, case.rename))))
    if evaluate:
        model.set_attributes(**case.nnx_eval, raise_if_not_found=False)
    else:
        model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def objective(params):
        m = nnx.merge(graphdef, params, jax.tree.map(jnp.asarray, rest))
        out = m(x, rngs=key) if case.streams else m(x)
        return scalar(out), (out, nnx.to_pure_dict(nnx.state(m, nnx.Not(nnx.Param))))

    before = nnx.to_pure_dict(rest)
    if evaluate:
        out, state = objective(params)[1]
        return out, None, state, before
    grads, (out, state) = jax.grad(objective, has_aux=True)(params)
    return out, nnx.to_pure_dict(grads), state, before


def assert_close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


def drop_collection(flat_tree: dict) -> dict:
    """``{(collection, *path): leaf}`` -> ``{path: leaf}`` (NNX has no collection level)."""
    return {path[1:]: leaf for path, leaf in flat_tree.items()}


def both_modes(case: Case, x, key, monkeypatch):
    """Linen and NNX in training and (where the layer has it) evaluation, all in one
    ``jit``: one compile per layer. The Linen layer's keys are the key the NNX layer
    gets (``make_rng`` patched while tracing the calls, not the initialization)."""
    modes = [(case.train_kwargs, False)]
    if case.eval_kwargs is not None:
        modes.append((case.eval_kwargs, True))

    @jax.jit
    def run(x, key):
        init = functools.partial(case.linen.init, **case.train_kwargs)
        variables = init({"params": jax.random.key(3), **{s: key for s in case.streams}}, x)
        # Perturb every variable so that no parity rests on an initial value (0, 1).
        variables = jax.tree.map(lambda v: v * 1.1 + 0.01, variables)
        monkeypatch.setattr(linen.Module, "make_rng", lambda self, name="params": key)
        return [
            (
                linen_run(case, variables, x, key, kwargs, not evaluate),
                nnx_run(case, variables, x, key, evaluate=evaluate),
            )
            for kwargs, evaluate in modes
        ]

    try:
        return jax.device_get(run(x, key))
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_outputs_gradients_and_state_updates(name, monkeypatch):
    case = CASES[name]
    x = case.inputs(jax.random.key(0))
    for linen_result, nnx_result in both_modes(case, x, jax.random.key(7), monkeypatch):
        out_l, grads_l, updates_l = linen_result
        out_n, grads_n, state_n, before = nnx_result
        jax.tree.map(assert_close, out_l, out_n)
        if grads_l is not None:
            grads_l, grads_n = flat(grads_l, case.rename), flat(grads_n)
            assert grads_l.keys() == grads_n.keys()
            for path, grad in grads_l.items():
                assert_close(grad, grads_n[path])
        state_n, before = flat(state_n), flat(before)
        updated = drop_collection(flat(updates_l, case.rename))
        for path, value in state_n.items():  # updated as Linen's, or not at all
            assert_close(updated.get(path, before[path]), value)


def test_lstm_cell_parity_over_a_sequence():
    """The variational LSTM cell: same weight key per sequence -> same hidden states,
    KL and gradients, unrolled by a Python loop."""
    key, steps = jax.random.key(5), 3
    xs = jax.random.normal(jax.random.key(0), (steps, B, D))
    cell = V.LSTMCellReparameterization(F)

    def run(module, xs):
        carry = module.initialize_carry(jax.random.key(0), xs[0].shape)
        hs = []
        for x in xs:
            carry, h = module(carry, x)
            hs.append(h)
        return jnp.stack(hs)

    variables = jax.jit(linen.init(run, cell))(
        {"params": jax.random.key(1), "variational": key}, xs
    )

    def linen_loss(params):
        hs, updates = linen.apply(run, cell, mutable=["losses"])(
            {"params": params}, xs, rngs={"variational": key}
        )
        return scalar(hs) + updates["losses"]["kl"], hs

    model = nnx.jit(lambda: N.LSTMCellReparameterization(D, F, rngs=nnx.Rngs(params=2)))()
    nnx.update(model, nested(flat(variables["params"])))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def nnx_loss(params):
        m = nnx.merge(graphdef, params, jax.tree.map(jnp.asarray, rest))
        carry = m.initialize_carry(xs[0].shape, rngs=nnx.Rngs(variational=key))
        hs = []
        for x in xs:
            carry, h = m(carry, x)
            hs.append(h)
        return scalar(jnp.stack(hs)) + m.kl[...], jnp.stack(hs)

    # The Linen cell's key is make_rng's fold of the stream; the NNX cell's is
    # Rngs(variational=key).variational(): give both the same one.
    nnx_key = nnx.Rngs(variational=key).variational()

    @jax.jit
    def both(linen_params, nnx_params):
        with unittest.mock.patch.object(
            linen.Module, "make_rng", lambda self, name="params": nnx_key
        ):
            linen_result = jax.grad(linen_loss, has_aux=True)(linen_params)
        return linen_result, jax.grad(nnx_loss, has_aux=True)(nnx_params)

    (grads_l, hs_l), (grads_n, hs_n) = both(variables["params"], params)
    assert_close(hs_l, hs_n)
    for path, grad in flat(grads_l).items():
        assert_close(grad, flat(nnx.to_pure_dict(grads_n))[path])


def test_state_types_filter_an_nnx_model():
    """``nnx.state(model, SpectralStats)`` holds exactly the power-iteration vectors."""
    model = N.SpectralNormDense(D, F, rngs=nnx.Rngs(0))
    assert list(flat(nnx.to_pure_dict(nnx.state(model, SpectralStats)))) == [("u",)]

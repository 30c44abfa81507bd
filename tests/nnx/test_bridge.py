"""relbench layers cross ``flax.nnx.bridge`` both ways.

* ``nnx.bridge.ToNNX`` of every Linen layer initializes (``bridge.lazy_init``) with its
  non-parameter collections as relbench's registered NNX variable types, and a
  training call with ``mutable=True`` writes the layer's own updates back, as Linen's
  ``apply`` computes them.
* ``nnx.bridge.ToLinen`` of the NNX layers works inside a Linen model: same variables
  as the Linen layers' (names included), same outputs and collection updates.
"""

from __future__ import annotations

import functools

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.nnx import bridge

from relbench import layers as L
from relbench import nnx as N
from relbench.layers.state_types import STATE_TYPES
from tests.nnx.cases import CASES, D, K
from tests.nnx.test_parity import assert_close, flat


@pytest.mark.parametrize("name", sorted(CASES))
def test_to_nnx_initializes_and_updates_its_own_collections(name):
    case = CASES[name]
    x = case.inputs(jax.random.key(0))
    streams = {s: 1 for s in case.streams}
    model = bridge.ToNNX(case.linen, rngs=nnx.Rngs(params=0, **streams))
    bridge.lazy_init(model, x, **case.train_kwargs)
    variables = {}
    for collection, variable_type in {"params": nnx.Param, **STATE_TYPES}.items():
        state = nnx.to_pure_dict(nnx.state(model, variable_type))
        if state:
            variables[collection] = state
    linen_variables = jax.eval_shape(  # shapes only: no compile
        functools.partial(case.linen.init, **case.train_kwargs),
        {"params": jax.random.key(9), **{s: jax.random.key(1) for s in case.streams}},
        x,
    )
    # Every collection Linen's init makes is there, as its registered type.
    assert set(variables) == set(linen_variables)

    @nnx.jit
    def train_call(model, x):
        return model(x, **case.train_kwargs, mutable=True)

    train_call(model, x)
    after = {c: nnx.to_pure_dict(nnx.state(model, t)) for c, t in STATE_TYPES.items()}
    rngs = {s: jax.random.key(1) for s in case.streams}
    apply = functools.partial(case.linen.apply, **case.train_kwargs, mutable=True)
    # A random layer's updates depend on ToNNX's own key: their structure is compared.
    run = functools.partial(jax.eval_shape, apply) if case.streams else jax.jit(apply)
    _, expected = run(variables, x, rngs=rngs)
    for collection, updates in expected.items():
        if collection == "params":
            continue
        got = flat(after[collection])
        assert got.keys() == flat(updates).keys()
        if not case.streams:
            for path, value in flat(updates).items():
                assert_close(value, got[path])


class SNGPHead(linen.Module):
    """A Linen model's SNGP part: one spectral-normalized dense layer and the GP head,
    of Linen layers or of NNX layers through ``bridge.ToLinen``."""

    use_nnx: bool

    @linen.compact
    def __call__(self, x, *, train: bool):
        if self.use_nnx:
            hidden = bridge.ToLinen(
                N.SpectralNormDense,
                args=(D, 8),
                kwargs={"deterministic": not train},
                name="hidden",
            )
            head = bridge.ToLinen(
                N.RandomFeatureGaussianProcess,
                args=(8, K),
                kwargs={"num_features": 16, "deterministic": not train},
                name="head",
            )
            return head(jnp.tanh(hidden(x)))
        hidden = L.SpectralNormDense(8, name="hidden")
        head = L.RandomFeatureGaussianProcess(K, num_features=16, name="head")
        return head(jnp.tanh(hidden(x, train=train)), train=train)


def test_to_linen_layers_inside_a_linen_model():
    x = jax.random.normal(jax.random.key(0), (4, D))
    nnx_model, linen_model = SNGPHead(use_nnx=True), SNGPHead(use_nnx=False)
    variables = nnx_model.init(jax.random.key(1), x, train=False)
    shapes = jax.tree.map(jnp.shape, linen_model.init(jax.random.key(1), x, train=False))
    assert jax.tree.map(jnp.shape, variables) == shapes  # the same variable tree
    mutable = ["spectral_stats", "laplace"]
    for train in (True, False):
        out_n, up_n = nnx_model.apply(variables, x, train=train, mutable=mutable)
        out_l, up_l = linen_model.apply(variables, x, train=train, mutable=mutable)
        jax.tree.map(assert_close, out_n, out_l)
        jax.tree.map(assert_close, flat(up_n), flat(up_l))
    # Training moved the power-iteration vector and the precision.
    out, updates = nnx_model.apply(variables, x, train=True, mutable=mutable)
    assert not np.allclose(
        updates["laplace"]["head"]["precision"], variables["laplace"]["head"]["precision"]
    )

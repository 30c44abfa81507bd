"""An NNX model behind Linen's ``init`` / ``apply``: how the one loop trains NNX models.

The loop, the methods and the post-hoc steps call ``model.init(rngs, x, train=...)`` and
``model.apply(variables, x, train=..., rngs=..., mutable=...)`` on pytrees of arrays
(the Linen calling convention, ``DESIGN.md``). ``NNXModel`` gives an NNX model that
interface with ``nnx.split`` / ``nnx.merge`` around every call, inside the jitted step:

* ``init`` builds the model (``build(input_shape, rngs)``, eager NNX construction) and
  returns its state grouped into collections by variable type (``nnx.Param`` ->
  ``"params"``, ``nnx.BatchStat`` -> ``"batch_stats"``, ``SpectralStats`` ->
  ``"spectral_stats"``...; the names ``flax.nnx.register_variable_name`` gives them),
  without its RNG state: nothing random lives in the train state;
* ``apply`` merges the graph (from ``nnx.eval_shape`` of ``build``) with those
  collections, reseeds every RNG stream the call's ``rngs`` names (``nnx.reseed``; each
  layer's forked stream gets its own key), sets ``model.train()`` or ``model.eval()``,
  calls the model and returns the new values of the ``mutable`` collections as Linen
  does (``(outputs, updates)``; outputs alone without ``mutable``).

A model's RNG streams are forked at construction from ``STREAMS`` (and any
``rng_streams`` it adds), so the graph does not depend on which streams a method uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, traverse_util
from flax.nnx import variablelib

#: The RNG streams of relbench's layers (a model's layers fork those they draw from).
STREAMS = ("dropout", "variational", "rank1", "heteroscedastic")


def collections(state: nnx.State) -> dict[str, Any]:
    """An NNX state -> ``{collection: nested dict of arrays}`` by variable type."""
    grouped: dict[str, dict] = {}
    for path, variable in nnx.to_flat_state(state):
        name = variablelib.variable_name_from_type(type(variable), allow_register=True)
        grouped.setdefault(name, {})[tuple(path)] = variable.get_value()
    return {name: traverse_util.unflatten_dict(flat) for name, flat in grouped.items()}


def _placeholder(leaf: jax.ShapeDtypeStruct) -> jax.Array:
    """An RNG state leaf before ``nnx.reseed``: a fixed key (a stream the call does not
    name draws nothing: the layers that draw get their stream from ``rngs``)."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jnp.broadcast_to(jax.random.key(0), leaf.shape)
    return jnp.zeros(leaf.shape, leaf.dtype)


class NNXModel:
    """Linen's ``init`` / ``apply`` over an NNX model; subclasses define ``build``.

    ``build(input_shape, rngs) -> nnx.Module`` makes the model for inputs
    ``[B, *input_shape]``; its ``__call__(x)`` returns ``(logits [M, B, K], extras)``.
    """

    rng_streams: Sequence[str] = STREAMS

    def build(self, input_shape: tuple[int, ...], rngs: nnx.Rngs) -> nnx.Module:
        raise NotImplementedError(f"{type(self).__name__} defines no build")

    def _rngs(self, rngs: Mapping[str, jax.Array]) -> nnx.Rngs:
        params = rngs["params"]
        streams = {s: jax.random.fold_in(params, i) for i, s in enumerate(self.rng_streams)}
        return nnx.Rngs(**{**streams, **rngs})

    def init(self, rngs: Mapping[str, jax.Array] | jax.Array, inputs: jax.Array, *, train: bool):
        del train  # NNX builds every variable eagerly, whatever the mode.
        rngs = {"params": rngs} if isinstance(rngs, jax.Array) else dict(rngs)
        model = self.build(tuple(inputs.shape[1:]), self._rngs(rngs))
        return collections(nnx.state(model, nnx.Not(nnx.RngState)))

    def apply(
        self,
        variables: Mapping[str, Any],
        inputs: jax.Array,
        *,
        train: bool,
        rngs: Mapping[str, jax.Array] | None = None,
        mutable: bool | Sequence[str] = False,
    ):
        input_shape = tuple(inputs.shape[1:])
        key = jax.random.key(0)
        abstract = nnx.eval_shape(lambda: self.build(input_shape, self._rngs({"params": key})))
        graphdef, rng_state, state = nnx.split(abstract, nnx.RngState, ...)
        merged: dict = {}
        for tree in variables.values():
            merged.update(traverse_util.flatten_dict(dict(tree)))
        nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(merged))
        model = nnx.merge(graphdef, jax.tree.map(_placeholder, rng_state), state)
        if rngs:
            nnx.reseed(model, **rngs)
        if train:
            model.train()
        else:
            model.eval()
        outputs = model(inputs)
        if mutable is False:
            return outputs
        new = collections(nnx.state(model, nnx.Not(nnx.RngState)))
        names = [n for n in new if n != "params"] if mutable is True else list(mutable)
        return outputs, {name: new[name] for name in names if name in new}

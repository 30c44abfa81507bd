"""Independent members: any layer, vectorized over M members with their own variables.

``independent_members(nn.Dense, M)`` is a drop-in layer type: it takes the member-major
batch ``[M * B, ...]`` (see ``layers.members``), gives member ``m`` its own copy of every
variable of the wrapped layer (parameters and batch statistics, stacked on a leading
member axis) and applies copy ``m`` to rows ``[m * B, (m + 1) * B)``:

    y[m * B + b] = layer(x[m * B + b]; theta_m),     theta_m ~ init(split(key, M)[m]).

It is ``flax.linen.vmap`` over the member axis with every variable collection mapped
(``variable_axes={True: 0}``) and every RNG stream split (``split_rngs={True: True}``),
so initialization is a ``vmap`` over member keys and training is a ``vmap`` inside the
one jitted step. A model whose every parameterized layer type is replaced this way is a
deep ensemble [1] of M copies of itself: member ``m`` is the base model with the
``m``-th slice of every variable, and the variable tree keeps the base model's names.

``vmap`` turns M convolutions into one grouped convolution, which XLA:CPU runs about
ten times slower than M ordinary ones. With ``unroll=True`` the variables and their
initialization stay the same, but ``apply`` runs the M members as M ordinary calls in
the same program (for layers with parameters only, such as ``Dense`` and ``Conv``).

References:
  [1] Lakshminarayanan, Pritzel, Blundell. Simple and Scalable Predictive Uncertainty
      Estimation using Deep Ensembles. NeurIPS 2017. https://arxiv.org/abs/1612.01474
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.layers.members import split_members

ModuleDef = Any


def merge_members(x: jax.Array) -> jax.Array:
    """``[M, B, ...] -> [M * B, ...]``, the inverse of ``split_members``."""
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def independent_members(layer: ModuleDef, ensemble_size: int, unroll: bool = False) -> ModuleDef:
    """The layer type ``layer`` with M independent copies of its variables.

    Args:
      layer: a Linen module class whose ``__call__`` maps a batch ``[N, ...]`` to outputs
        with a leading batch axis (any pytree of arrays, e.g. a head's ``(logits, extras)``),
        or a ``functools.partial`` of one (a configured type, such as a batch norm with
        its momentum set); keyword arguments of ``__call__`` are the same for every member.
      ensemble_size: M.
      unroll: apply the members one after another in the program instead of ``vmap``
        (only for layers whose variables are all parameters and that draw no RNG).

    Returns:
      A module type with the constructor of ``layer`` and the same class name (so a
      model's variable names do not change), whose ``__call__`` takes ``[M * B, ...]``;
      a partial of such a class where ``layer`` was a partial.
    """
    if isinstance(layer, functools.partial):
        members = independent_members(layer.func, ensemble_size, unroll)
        return functools.partial(members, *layer.args, **layer.keywords)

    def keywords_last(self, inputs, *args):
        *args, keywords = args
        return super(target, self).__call__(inputs, *args, **dict(keywords.items))

    # flax.linen.vmap lifts positional arguments only: keyword arguments travel as a
    # last positional argument that is a pytree without leaves.
    target = type(layer.__name__, (layer,), {"__call__": keywords_last})
    lifted = nn.vmap(
        target,
        variable_axes={True: 0},
        split_rngs={True: True},
        in_axes=0,
        out_axes=0,
        axis_size=ensemble_size,
    )

    def __call__(self, inputs, *args, **kwargs):
        members = split_members(inputs, ensemble_size)  # [M*B, ...] -> [M, B, ...]
        if unroll and not self.is_initializing():
            outputs = _unrolled(self, layer, members, *args, **kwargs)
        else:
            keywords = _Keywords(tuple(sorted(kwargs.items())))
            outputs = super(members_cls, self).__call__(members, *args, keywords)
        return jax.tree.map(merge_members, outputs)  # [M, B, ...] -> [M*B, ...]

    members_cls = type(layer.__name__, (lifted,), {"__call__": __call__})
    members_cls.__qualname__ = layer.__qualname__
    members_cls.__doc__ = f"{layer.__name__} with {ensemble_size} independent members."
    return members_cls


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _Keywords:
    """Keyword arguments of a layer call, the same for every member (static under vmap)."""

    items: tuple[tuple[str, Any], ...]


def _unrolled(module: nn.Module, layer: type[nn.Module], members: jax.Array, *a, **kw):
    """Member ``m``'s variables applied to ``members[m]`` by an unbound ``layer``, for
    every ``m``; the outputs stacked on a new leading member axis."""
    fields = {
        f.name: getattr(module, f.name)
        for f in dataclasses.fields(layer)
        if f.init and f.name not in ("parent", "name")
    }
    base = layer(**fields, parent=None)
    # One split per variable: its gradient is one concatenation, not M padded copies.
    split = jax.tree.map(lambda v: jnp.split(v, v.shape[0]), module.variables)
    is_parts = lambda p: isinstance(p, list)  # noqa: E731
    outputs = [
        base.apply(jax.tree.map(lambda p, m=m: p[m][0], split, is_leaf=is_parts), x, *a, **kw)
        for m, x in enumerate(members)
    ]
    return jax.tree.map(lambda *o: jnp.stack(o), *outputs)

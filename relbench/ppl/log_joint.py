"""The log joint density of a probabilistic program, as a pure function.

For a program that builds named random variables ``z_1, ..., z_n`` (each possibly
depending on the ones before and on the program's inputs ``x``),

    log p(z_1, ..., z_n | x) = sum_i log p(z_i | z_<i, x),

each term summed over the variable's batch and event dimensions.
:func:`make_log_joint_fn` runs the program under a tracer that sets every variable to
the given value and adds up the terms, so the result is a pure function of the values
that ``jax.jit``, ``jax.grad`` and ``jax.vmap`` accept (as in Edward2 [1]).

References:
  [1] Tran, Hoffman, Moore, Suter, Vasudevan, Radul, Johnson, Saurous. Simple,
      Distributed, and Accelerated Probabilistic Programming. NeurIPS 2018.
      https://arxiv.org/abs/1811.02091
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.ppl.tracing import trace


def make_log_joint_fn(model: Callable[..., Any]) -> Callable[..., jax.Array]:
    """``model(*args, **kwargs)`` -> ``log_joint(values, *args, **kwargs) -> scalar``.

    ``values`` maps the name of every random variable the model builds to its value.
    A random variable without a name or without a value, or a value for a name the
    model does not build, is a UsageError. No key is needed: nothing is sampled.
    """

    def log_joint(values: Mapping[str, Any], *args, **kwargs) -> jax.Array:
        terms: list[jax.Array] = []
        seen: set[str] = set()

        def score(constructor, *c_args, **c_kwargs):
            name = c_kwargs.get("name")
            if name is None:
                raise UsageError(
                    "make_log_joint_fn needs every random variable named; pass name=... "
                    "to each constructor in the model"
                )
            if name not in values:
                raise UsageError(
                    f"log joint has no value for random variable '{name}'; add it to values"
                )
            if name in seen:
                raise UsageError(f"random variable name '{name}' is used twice in the model")
            seen.add(name)
            rv = constructor(*c_args, **{**c_kwargs, "value": values[name]})
            terms.append(jnp.sum(rv.log_prob()))
            return rv

        with trace(score):
            model(*args, **kwargs)
        unused = sorted(set(values) - seen)
        if unused:
            raise UsageError(
                f"log joint got a value for '{unused[0]}' but the model builds no random "
                "variable of that name"
            )
        return sum(terms, jnp.zeros(()))

    return log_joint

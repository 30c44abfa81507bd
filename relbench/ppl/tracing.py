"""Tracing: intercept random-variable constructors to record or change a program.

A *tracer* is a function ``tracer(constructor, *args, **kwargs)`` called in place of
every traceable constructor (``Normal(...)``, ...) run inside ``with trace(tracer):``.
Calling ``constructor(*args, **kwargs)`` inside the tracer forwards to the next tracer
out, and finally builds the random variable, so tracers compose by nesting — the
effect-handler design of Edward2 [1] and Pyro/NumPyro's handlers [2].

* :func:`tape` records every named random variable a program builds;
* :func:`set_value` is a tracer that replaces the values of named variables;
* :func:`condition` runs a block with named variables fixed to observed values.

References:
  [1] Tran, Hoffman, Moore, Suter, Vasudevan, Radul, Johnson, Saurous. Simple,
      Distributed, and Accelerated Probabilistic Programming. NeurIPS 2018.
      https://arxiv.org/abs/1811.02091
  [2] Moore, Gorinova. Effect Handling for Composable Program Transformations in
      Edward2. 2018. https://arxiv.org/abs/1811.06150
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from relbench.errors import UsageError

Tracer = Callable[..., Any]

_state = threading.local()


def _tracers() -> list[Tracer]:
    if not hasattr(_state, "tracers"):
        _state.tracers = []
    return _state.tracers


def traceable(func: Callable[..., Any]) -> Callable[..., Any]:
    """Makes ``func`` interceptable by the innermost active tracer.

    While a tracer runs it is removed from the stack, so that when it calls ``func``
    the call goes to the next tracer out (or, with none left, to ``func`` itself).
    """

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        stack = _tracers()
        if not stack:
            return func(*args, **kwargs)
        tracer = stack.pop()
        try:
            return tracer(wrapped, *args, **kwargs)
        finally:
            stack.append(tracer)

    return wrapped


@contextlib.contextmanager
def trace(tracer: Tracer) -> Iterator[None]:
    """Every traceable call inside the block goes through ``tracer`` first."""
    stack = _tracers()
    stack.append(tracer)
    try:
        yield
    finally:
        stack.pop()


@contextlib.contextmanager
def tape() -> Iterator[dict[str, Any]]:
    """Records the named random variables built inside the block, in order, by name.

    A name built twice is an error: a tape, a condition and a log joint all address a
    variable by its name, so names must be unique in one run of a program.
    """
    recorded: dict[str, Any] = {}

    def record(constructor, *args, **kwargs):
        rv = constructor(*args, **kwargs)
        if rv.name is not None:
            if rv.name in recorded:
                raise UsageError(
                    f"random variable name '{rv.name}' is used twice in one program; "
                    "give each random variable a unique name"
                )
            recorded[rv.name] = rv
        return rv

    with trace(record):
        yield recorded


def set_value(values: Mapping[str, Any], used: set[str] | None = None) -> Tracer:
    """A tracer that builds the named random variables with the given values.

    Args:
      values: name -> value; variables with other names are left alone.
      used: if given, the names that were replaced are added to it.
    """

    def setter(constructor, *args, **kwargs):
        name = kwargs.get("name")
        if name in values:
            kwargs = {**kwargs, "value": values[name]}
            if used is not None:
                used.add(name)
        return constructor(*args, **kwargs)

    return setter


@contextlib.contextmanager
def condition(**values: Any) -> Iterator[None]:
    """Runs the block with the named random variables fixed to ``values``.

    Example: ``with condition(y=y_observed): model(x)``. A name no random variable in
    the block carries is an error (a misspelt name would otherwise be ignored).
    """
    used: set[str] = set()
    with trace(set_value(values, used)):
        yield
    unused = sorted(set(values) - used)
    if unused:
        raise UsageError(
            f"condition got a value for '{unused[0]}' but no random variable of that name "
            "was built; check the name"
        )

"""Tracing: interception order, tapes, and replacing values by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import relbench.ppl as rb
from relbench.errors import UsageError

KEY = jax.random.key(0)


def model(x):
    w = rb.Normal(jnp.zeros(2), 1.0, name="w")
    noise = rb.HalfNormal(1.0, name="noise")
    return rb.Normal(x @ w, noise, name="y")


X = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])


def test_tape_records_named_variables_in_order():
    with rb.seed(KEY), rb.tape() as rvs:
        y = model(X)
    assert list(rvs) == ["w", "noise", "y"]
    assert rvs["y"] is y
    np.testing.assert_allclose(rvs["y"].distribution.loc, X @ rvs["w"].value)


def test_condition_replaces_values_and_downstream_sees_them():
    w = jnp.array([1.0, -2.0])
    with rb.seed(KEY), rb.tape() as rvs, rb.condition(w=w):
        model(X)
    np.testing.assert_array_equal(rvs["w"].value, w)
    np.testing.assert_allclose(rvs["y"].distribution.loc, X @ w)


def test_set_value_tracer_and_nesting_order():
    calls = []

    def log_calls(tag):
        def tracer(constructor, *args, **kwargs):
            calls.append((tag, kwargs.get("name")))
            return constructor(*args, **kwargs)

        return tracer

    w = jnp.array([0.5, 0.5])
    with rb.trace(log_calls("outer")), rb.trace(rb.set_value({"w": w})):
        with rb.trace(log_calls("inner")):
            rv = rb.Normal(jnp.zeros(2), 1.0, name="w")
    np.testing.assert_array_equal(rv.value, w)
    assert calls == [("inner", "w"), ("outer", "w")]  # innermost first


def test_misspelt_condition_and_duplicate_names_are_usage_errors():
    with pytest.raises(UsageError, match="'v'"):
        with rb.seed(KEY), rb.condition(v=jnp.zeros(2)):
            model(X)

    def twice():
        rb.Normal(0.0, 1.0, name="a")
        rb.Normal(0.0, 1.0, name="a")

    with pytest.raises(UsageError, match="used twice"):
        with rb.seed(KEY), rb.tape():
            twice()

"""Random variables: the distribution's shapes, dtypes and densities; keys; arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import relbench.ppl as rb
from relbench.errors import UsageError
from relbench.ppl.random_variable import distrax, tfd

KEY = jax.random.key(0)

CASES = [
    (rb.Normal, distrax.Normal, (jnp.zeros(3), 2.0)),
    (rb.Bernoulli, distrax.Bernoulli, (None, jnp.full((2, 3), 0.3))),
    (rb.Categorical, distrax.Categorical, (jnp.log(jnp.array([[0.2, 0.5, 0.3]])),)),
    (rb.Exponential, tfd.Exponential, (jnp.array([0.5, 2.0]),)),
    (rb.Gamma, distrax.Gamma, (jnp.array([2.0, 3.0]), 1.5)),
    (rb.Beta, distrax.Beta, (2.0, jnp.array([3.0, 4.0]))),
    (rb.Dirichlet, distrax.Dirichlet, (jnp.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]),)),
    (rb.MultivariateNormalDiag, distrax.MultivariateNormalDiag, (jnp.zeros(4), jnp.ones(4))),
    (rb.Laplace, distrax.Laplace, (1.0, 0.5)),
    (rb.HalfNormal, tfd.HalfNormal, (jnp.ones(2),)),
]


@pytest.mark.parametrize("constructor, distribution_cls, args", CASES)
@pytest.mark.parametrize("sample_shape", [(2,)])
def test_matches_its_distribution(constructor, distribution_cls, args, sample_shape):
    rv = constructor(*args, key=KEY, sample_shape=sample_shape, name="x")
    reference = distribution_cls(*args)
    expected = reference.sample(seed=KEY, sample_shape=sample_shape)
    assert rv.shape == expected.shape
    assert rv.dtype == expected.dtype
    np.testing.assert_array_equal(rv.value, expected)
    np.testing.assert_array_equal(rv.log_prob(), reference.log_prob(expected))
    assert rv.name == "x" and rv.sample_shape == sample_shape


def test_same_key_same_sample_and_different_key_different_sample():
    a = rb.Normal(jnp.zeros(8), 1.0, key=KEY)
    b = rb.Normal(jnp.zeros(8), 1.0, key=KEY)
    c = rb.Normal(jnp.zeros(8), 1.0, key=jax.random.key(1))
    np.testing.assert_array_equal(a.value, b.value)
    assert not np.array_equal(a.value, c.value)


def test_seed_scope_keys_each_variable_by_name_deterministically():
    def program():
        return rb.Normal(0.0, 1.0, name="a"), rb.Normal(0.0, 1.0, name="b"), rb.Normal(0.0, 1.0)

    with rb.seed(KEY):
        first = [rv.value for rv in program()]
    with rb.seed(KEY):
        second = [rv.value for rv in program()]
    np.testing.assert_array_equal(first, second)
    assert len(set(np.asarray(first).tolist())) == 3  # every variable its own key
    with rb.seed(KEY):  # "a" keeps its draw when another variable is built first
        rb.Normal(0.0, 1.0, name="other")
        again = rb.Normal(0.0, 1.0, name="a")
    assert again.value == first[0]


def test_missing_key_or_wrong_value_shape_is_a_usage_error():
    with pytest.raises(UsageError, match="has no key"):
        rb.Normal(0.0, 1.0, name="w")
    with pytest.raises(UsageError, match=r"needs sample_shape \+ batch_shape"):
        rb.Normal(jnp.zeros(3), 1.0, value=jnp.zeros(4))
    with pytest.raises(UsageError, match="typed key"):
        with rb.seed(jnp.zeros(2, jnp.uint32)):
            pass


def test_behaves_as_its_value_in_arithmetic_and_jnp():
    rv = rb.Normal(jnp.arange(3.0), 1.0, key=KEY)
    x = rv.value
    pairs = [
        (rv + 1.0, x + 1.0),
        (2.0 * rv, 2.0 * x),
        (1.0 - rv, 1.0 - x),
        (rv / 2.0, x / 2.0),
        (rv**2, x**2),
        (-rv, -x),
        (abs(rv), jnp.abs(x)),
        (rv @ jnp.ones(3), x @ jnp.ones(3)),
        (jnp.ones(3) + rv, jnp.ones(3) + x),
        (np.ones(3) * rv, np.ones(3) * x),
        (rv > 0.0, x > 0.0),
        (rv[1:], x[1:]),
        (jnp.sin(rv), jnp.sin(x)),
        (jnp.sum(rv), jnp.sum(x)),
        (jnp.where(rv > 0, rv, 0.0), jnp.where(x > 0, x, 0.0)),
        (jnp.asarray(rv), x),
        (rv + rv, x + x),
        (jax.jit(lambda r: jnp.exp(r) * 2.0)(rv), jnp.exp(x) * 2.0),
    ]
    for got, want in pairs:
        np.testing.assert_array_equal(got, want)
    assert rv.ndim == 1 and len(rv) == 3


def test_random_variable_parameters_stand_for_their_values():
    scale = rb.Gamma(2.0, 1.0, key=KEY)
    y = rb.Normal(0.0, scale, key=jax.random.key(1))
    assert y.distribution.scale == scale.value


def test_jit_round_trip_keeps_distribution():
    rv = rb.Normal(jnp.zeros(2), 3.0, key=KEY, name="w")
    out = jax.jit(lambda r: r)(rv)
    assert isinstance(out, rb.RandomVariable) and out.name == "w"
    np.testing.assert_array_equal(out.log_prob(), rv.log_prob())

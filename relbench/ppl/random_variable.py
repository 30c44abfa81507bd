"""Random variables: a distribution and one value drawn from it, usable as an array.

``Normal(loc, scale, name="w", key=key)`` builds a distrax (or TFP-on-JAX) distribution,
draws a value with an explicit typed key, and returns a :class:`RandomVariable` that
arithmetic, ``jnp`` functions and ``jax.jit`` accept like the value itself [1]. Inside
``with seed(key):`` no key needs to be passed: each variable gets its own key,
derived deterministically from the scope's key and the variable's name (or, for an
unnamed variable, its position among the unnamed ones), so a probabilistic program is
a plain Python function that can be called without threading keys by hand.

Every constructor here is made by the one factory :func:`make_random_variable` and is
*traceable*: ``relbench.ppl.trace`` can intercept it (record it, replace its value).

References:
  [1] Tran, Hoffman, Moore, Suter, Vasudevan, Radul, Johnson, Saurous. Simple,
      Distributed, and Accelerated Probabilistic Programming (Edward2). NeurIPS 2018.
      https://arxiv.org/abs/1811.02091
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from relbench.errors import UsageError
from relbench.ppl.tracing import traceable

with warnings.catch_warnings():
    # tfp-nightly's JAX backend (imported by distrax) reads jax.core.pytype_aval_mappings,
    # which JAX 0.10 deprecates; the warning is about tfp's import, not about our use.
    warnings.filterwarnings(
        "ignore", message="jax.core.pytype_aval_mappings", category=DeprecationWarning
    )
    import distrax
    import tensorflow_probability.substrates.jax.distributions as tfd


# ----------------------------------------------------------------------------- keys


@dataclasses.dataclass
class _KeyScope:
    key: jax.Array
    unnamed: int = 0
    names: dict[str, int] = dataclasses.field(default_factory=dict)

    def next_key(self, name: str | None) -> jax.Array:
        if name is None:
            index, self.unnamed = self.unnamed, self.unnamed + 1
            return jax.random.fold_in(jax.random.fold_in(self.key, 0), index)
        # A name repeated in one scope (a loop) gets a fresh key per occurrence.
        occurrence = self.names.get(name, 0)
        self.names[name] = occurrence + 1
        by_name = jax.random.fold_in(jax.random.fold_in(self.key, 1), zlib.crc32(name.encode()))
        return jax.random.fold_in(by_name, occurrence)


_scopes = threading.local()


def _scope_stack() -> list[_KeyScope]:
    if not hasattr(_scopes, "stack"):
        _scopes.stack = []
    return _scopes.stack


@contextlib.contextmanager
def seed(key: jax.Array) -> Iterator[None]:
    """Random variables built inside without a ``key`` draw from ``key``.

    A named variable's key is ``fold_in`` of the scope key by its name (stable when
    other variables are added, removed or conditioned on); unnamed variables are keyed
    by their order. Scopes nest; the innermost wins.
    """
    dtype = getattr(key, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jax.dtypes.prng_key):
        raise UsageError(
            "ppl.seed needs a typed key; pass jax.random.key(seed), not a raw uint32 key"
        )
    stack = _scope_stack()
    stack.append(_KeyScope(key))
    try:
        yield
    finally:
        stack.pop()


# ----------------------------------------------------------------- random variable


def _value(x: Any) -> Any:
    return x.value if isinstance(x, RandomVariable) else x


@jax.tree_util.register_pytree_node_class
class RandomVariable:
    """A distribution together with a value drawn from (or set for) it.

    It behaves as its value in arithmetic, comparisons, indexing and every ``jnp``
    function (``__jax_array__``; it is a pytree, as JAX requires of such objects), and
    passes through ``jax.jit``. Its log density is ``rv.log_prob()``.

    Attributes:
      distribution: the distrax or TFP-on-JAX distribution.
      value: the array, shaped ``sample_shape + batch_shape + event_shape``.
      name: the name tracers use (``tape``, ``condition``, ``make_log_joint_fn``).
      sample_shape: leading sample dimensions of ``value``.
    """

    __slots__ = ("distribution", "value", "name", "sample_shape")
    __array_priority__ = 100  # numpy defers binary operators to ours

    def __init__(
        self,
        distribution: Any,
        *,
        name: str | None = None,
        value: Any = None,
        key: jax.Array | None = None,
        sample_shape: Sequence[int] = (),
    ):
        sample_shape = tuple(sample_shape)
        expected = sample_shape + tuple(distribution.batch_shape) + tuple(distribution.event_shape)
        label = f"{type(distribution).__name__}" + (f" '{name}'" if name else "")
        if value is None:
            if key is None:
                stack = _scope_stack()
                if not stack:
                    raise UsageError(
                        f"{label} has no key; pass key=jax.random.key(...) or build it "
                        "inside `with relbench.ppl.seed(key):`"
                    )
                key = stack[-1].next_key(name)
            value = distribution.sample(seed=key, sample_shape=sample_shape)
        else:
            value = jnp.asarray(_value(value))
            if value.shape != expected:
                raise UsageError(
                    f"{label} got a value of shape {value.shape}; it needs sample_shape + "
                    f"batch_shape + event_shape = {expected}"
                )
        self.distribution = distribution
        self.value = value
        self.name = name
        self.sample_shape = sample_shape

    # -- pytree: values and distribution parameters are leaves, so it crosses jit.
    def tree_flatten(self):
        return (self.distribution, self.value), (self.name, self.sample_shape)

    @classmethod
    def tree_unflatten(cls, aux, children):
        rv = object.__new__(cls)
        rv.distribution, rv.value = children
        rv.name, rv.sample_shape = aux
        return rv

    def log_prob(self, x: Any = None) -> jax.Array:
        """``log p(x)`` (default: of the value), shaped ``sample_shape + batch_shape``."""
        return self.distribution.log_prob(self.value if x is None else _value(x))

    def __jax_array__(self) -> jax.Array:
        return self.value

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.value, dtype=dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def size(self) -> int:
        return self.value.size

    @property
    def T(self) -> jax.Array:  # noqa: N802 (the array attribute's name)
        return self.value.T

    def __getitem__(self, index):
        return self.value[_value(index)]

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self):
        return iter(self.value)

    def __bool__(self) -> bool:
        return bool(self.value)

    def __float__(self) -> float:
        return float(self.value)

    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        return self.value.__index__()

    __hash__ = None  # elementwise __eq__, like jax.Array

    def __repr__(self) -> str:
        name = f" '{self.name}'" if self.name else ""
        return (
            f"<RandomVariable{name} {type(self.distribution).__name__} "
            f"shape={self.value.shape} dtype={self.value.dtype}>\n{self.value!r}"
        )


def _binary(op: Callable[[Any, Any], Any], reflected: bool) -> Callable:
    if reflected:
        return lambda self, other: op(_value(other), self.value)
    return lambda self, other: op(self.value, _value(other))


_OPERATORS = {
    "add": jnp.add,
    "sub": jnp.subtract,
    "mul": jnp.multiply,
    "truediv": jnp.true_divide,
    "floordiv": jnp.floor_divide,
    "mod": jnp.mod,
    "pow": jnp.power,
    "matmul": jnp.matmul,
    "and": jnp.bitwise_and,
    "or": jnp.bitwise_or,
    "xor": jnp.bitwise_xor,
    "lt": jnp.less,
    "le": jnp.less_equal,
    "gt": jnp.greater,
    "ge": jnp.greater_equal,
    "eq": jnp.equal,
    "ne": jnp.not_equal,
}
_COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")  # no reflected forms
for _name, _op in _OPERATORS.items():
    setattr(RandomVariable, f"__{_name}__", _binary(_op, reflected=False))
    if _name not in _COMPARISONS:
        setattr(RandomVariable, f"__r{_name}__", _binary(_op, reflected=True))
for _name, _op in {"neg": jnp.negative, "pos": jnp.positive, "abs": jnp.abs}.items():
    setattr(RandomVariable, f"__{_name}__", lambda self, _op=_op: _op(self.value))


# ---------------------------------------------------------------- constructors


def make_random_variable(distribution_cls: Callable[..., Any]) -> Callable[..., RandomVariable]:
    """A traceable ``RandomVariable`` constructor for a distribution class.

    The constructor takes the distribution's own arguments plus the keyword-only
    ``name``, ``value``, ``key`` and ``sample_shape`` of :class:`RandomVariable`.
    """

    @traceable
    def constructor(
        *args,
        name: str | None = None,
        value: Any = None,
        key: jax.Array | None = None,
        sample_shape: Sequence[int] = (),
        **kwargs,
    ) -> RandomVariable:
        # Random variables given as parameters stand for their values.
        args = tuple(_value(a) for a in args)
        kwargs = {k: _value(v) for k, v in kwargs.items()}
        return RandomVariable(
            distribution_cls(*args, **kwargs),
            name=name,
            value=value,
            key=key,
            sample_shape=sample_shape,
        )

    constructor.__name__ = constructor.__qualname__ = distribution_cls.__name__
    constructor.distribution = distribution_cls  # the family, e.g. for a layer's prior
    constructor.__doc__ = (
        f"A random variable over ``{distribution_cls.__module__}.{distribution_cls.__name__}``."
        "\n\nArgs: the distribution's arguments, then keyword-only ``name``, ``value``, "
        "``key``, ``sample_shape`` (see ``RandomVariable``)."
    )
    return constructor


Bernoulli = make_random_variable(distrax.Bernoulli)
Beta = make_random_variable(distrax.Beta)
Categorical = make_random_variable(distrax.Categorical)
Dirichlet = make_random_variable(distrax.Dirichlet)
Gamma = make_random_variable(distrax.Gamma)
Gumbel = make_random_variable(distrax.Gumbel)
Laplace = make_random_variable(distrax.Laplace)
Logistic = make_random_variable(distrax.Logistic)
MultivariateNormalDiag = make_random_variable(distrax.MultivariateNormalDiag)
MultivariateNormalFullCovariance = make_random_variable(distrax.MultivariateNormalFullCovariance)
MultivariateNormalTri = make_random_variable(distrax.MultivariateNormalTri)
Normal = make_random_variable(distrax.Normal)
OneHotCategorical = make_random_variable(distrax.OneHotCategorical)
Uniform = make_random_variable(distrax.Uniform)
# Not in distrax; TFP's JAX substrate has the same sample/log_prob interface.
Exponential = make_random_variable(tfd.Exponential)
HalfNormal = make_random_variable(tfd.HalfNormal)
LogNormal = make_random_variable(tfd.LogNormal)
StudentT = make_random_variable(tfd.StudentT)
Cauchy = make_random_variable(tfd.Cauchy)
Horseshoe = make_random_variable(tfd.Horseshoe)


def scale_mixture_normal(weight: float, scale1: float, scale2: float) -> Any:
    """``weight N(0, scale1^2) + (1 - weight) N(0, scale2^2)``, the prior of Blundell
    et al. (Bayes by Backprop), as a distrax mixture."""
    probs = jnp.array([weight, 1.0 - weight])
    components = distrax.Normal(jnp.zeros(2), jnp.array([scale1, scale2]))
    return distrax.MixtureSameFamily(distrax.Categorical(probs=probs), components)


ScaleMixtureNormal = make_random_variable(scale_mixture_normal)

"""Mixed precision (``config.train.compute_dtype``): bfloat16 compute learns as well as
float32, with float32 parameters, and the numerically delicate parts stay float32."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import configs
from relbench.errors import UsageError
from relbench.methods.precise_bn import precise_batch_norm
from relbench.train import loop

DIGITS_CNN = "experiments/digits_cnn.py"


def digits_experiment(method: str, compute_dtype: str, **train):
    config = configs.load(f"{DIGITS_CNN}:{method}")
    with config.unlocked():
        config.train.compute_dtype = compute_dtype
        config.train.update(train)
    return loop.build(config)


def train_digits_cnn(compute_dtype: str, epochs: int, state) -> float:
    """The digits CNN of experiments/digits_cnn.py trained ``epochs`` epochs with the
    loop's train step from the same initial parameters (float32 whatever the compute
    dtype), batch norm statistics refit (precise batch norm, as the loop does), then its
    test accuracy."""
    exp = digits_experiment("deterministic", compute_dtype, num_epochs=float(epochs))
    step = jax.jit(loop.make_train_step(exp))
    train = exp.dataset.train.read(np.arange(len(exp.dataset.train)))
    size, rng, key = exp.settings.global_batch_size, np.random.default_rng(0), jax.random.key(1)
    batches = []
    for _ in range(epochs):
        order = rng.permutation(len(train["label"]))
        batches += [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
    for rows in batches:
        state, _ = step(state, {k: v[rows] for k, v in train.items()}, key)
    refit = precise_batch_norm(exp.method.loss_fn, exp.method.rng_streams, len(train["label"]))
    refit_batches = [{k: v[rows] for k, v in train.items()} for rows in batches[:10]]
    state = refit(exp.model.apply, state, lambda split: iter(refit_batches), key)
    test_set = exp.dataset.eval_sets["test"].source
    test = test_set.read(np.arange(len(test_set)))
    logits, _ = jax.jit(exp.model.apply, static_argnames="train")(
        state.variables, test["input"], train=False
    )
    assert logits.dtype == jnp.float32
    return float(np.mean(np.argmax(np.asarray(logits).mean(0), -1) == test["label"]))


def test_bfloat16_digits_cnn_reaches_the_float32_accuracy():
    exp = digits_experiment("deterministic", "bfloat16")
    state = jax.jit(functools.partial(loop.init_state, exp))(jax.random.key(0))
    assert {str(leaf.dtype) for leaf in jax.tree.leaves(state)} == {"float32", "int32"}
    float32 = train_digits_cnn("float32", 3, state)
    bfloat16 = train_digits_cnn("bfloat16", 3, state)
    print(f"test accuracy: float32 {float32:.4f}, bfloat16 {bfloat16:.4f}")
    assert float32 > 0.95, float32  # it learns at all
    assert bfloat16 >= float32 - 0.01, (bfloat16, float32)


def _equations(jaxpr):
    """Every equation of ``jaxpr``, those of nested jaxprs (jit, custom_jvp) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


def _dtypes(eqn, which="invars"):
    return {str(v.aval.dtype) for v in getattr(eqn, which) if hasattr(v.aval, "dtype")}


def test_bfloat16_sngp_keeps_the_delicate_parts_float32():
    """In an SNGP digits CNN computing in bfloat16: the convolutions and matmuls of the
    trunk are bfloat16, but the power iteration (its [1, N] products), the Laplace
    precision update ([F, F] product), the Cholesky factor, the softmax and the loss are
    float32, and so are every parameter, gradient and updated collection."""
    exp = digits_experiment("sngp", "bfloat16")
    state = jax.eval_shape(functools.partial(loop.init_state, exp), jax.random.key(0))
    batch = {"input": jnp.ones((8, 8, 8, 1)), "label": jnp.arange(8) % 8}
    step = loop.make_train_step(exp)
    new_state, metrics = jax.eval_shape(step, state, batch, jax.random.key(1))
    leaves = jax.tree.leaves((new_state.params, new_state.opt_state, new_state.collections))
    assert {str(leaf.dtype) for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)} == {
        "float32"
    }
    assert metrics["loss"].dtype == jnp.float32
    equations = list(_equations(jax.make_jaxpr(step)(state, batch, jax.random.key(1)).jaxpr))
    products = [e for e in equations if e.primitive.name in ("dot_general", "conv_general_dilated")]
    assert any(_dtypes(e) == {"bfloat16"} for e in products)  # the trunk runs in bfloat16
    features = exp.model.layers.head.keywords["num_features"]
    for e in products:
        shape = e.outvars[0].aval.shape
        if shape == (features, features) or shape[0] == 1:  # precision update, power iteration
            assert _dtypes(e) == {"float32"}, (e.primitive, shape)
    softmax_like = [e for e in equations if e.primitive.name in ("exp", "log", "reduce_max")]
    assert softmax_like and all(_dtypes(e) == {"float32"} for e in softmax_like)
    variables = {"params": state.params, **state.collections}
    evaluation = jax.make_jaxpr(lambda v: exp.model.apply(v, batch["input"], train=False))(
        variables
    )
    cholesky = [e for e in _equations(evaluation.jaxpr) if e.primitive.name == "cholesky"]
    assert cholesky and all(_dtypes(e) == {"float32"} for e in cholesky)
    logits, extras = jax.eval_shape(
        lambda v: exp.model.apply(v, batch["input"], train=False), variables
    )
    assert logits.dtype == extras["variance"].dtype == jnp.float32


def test_an_unknown_compute_dtype_is_a_usage_error():
    with pytest.raises(UsageError, match="compute_dtype 'float16'.*bfloat16"):
        digits_experiment("deterministic", "float16")

"""Architectures: published parameter counts (by jax.eval_shape, no memory), output
shapes for every method's layer types, and layer math against naive references."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from relbench import methods, models
from relbench.models.resnet import pad_shortcut
from relbench.models.vit import dot_product_attention
from relbench.train.state import TrainState
from tests.models.tiny import TINY, tiny_inputs


def num_params(model, input_shape, dtype=jnp.float32):
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape), dtype), train=False)
    )
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def conv(c_in, c_out, k):
    return k * k * c_in * c_out


def wrn_closed_form(depth, k, num_classes):
    """Stem, pre-activation blocks (2 BN, 2 conv, 1x1 shortcut when the shape changes),
    final BN and the dense head, counted by hand from [Zagoruyko & Komodakis 2016]."""
    n = (depth - 4) // 6
    total, c_in = conv(3, 16, 3), 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += 2 * c_in + conv(c_in, width, 3) + 2 * width + conv(width, width, 3)
            total += conv(c_in, width, 1) if c_in != width else 0
            c_in = width
    return total + 2 * c_in + c_in * num_classes + num_classes


def cifar_resnet_closed_form(depth, num_classes):
    """Option-A ResNet: stem conv + BN, 2 (conv + BN) per block, dense head."""
    n = (depth - 2) // 6
    total, c_in = conv(3, 16, 3) + 32, 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += conv(c_in, width, 3) + conv(width, width, 3) + 4 * width
            c_in = width
    return total + 64 * num_classes + num_classes


def test_wrn_28_10_has_the_published_36_5m_parameters():
    count = num_params(models.make("wide_resnet", num_classes=10), (32, 32, 3))
    assert count == wrn_closed_form(28, 10, 10)
    assert round(count / 1e6, 1) == 36.5


def test_resnet50_has_the_published_25_6m_parameters():
    count = num_params(models.make("resnet", num_classes=1000), (224, 224, 3))
    assert count == 25_557_032  # torchvision's ResNet-50 count, 25.6M in [He et al.]


@pytest.mark.parametrize("depth, published", [(20, 0.27), (32, 0.46), (56, 0.85)])
def test_cifar_resnets_have_the_published_parameter_counts(depth, published):
    count = num_params(models.make("resnet_cifar", num_classes=10, depth=depth), (32, 32, 3))
    assert count == cifar_resnet_closed_form(depth, 10)
    assert round(count / 1e6, 2) == published


def tiny_layers(name, **changes):
    """Model ``name``'s default layer types with ``changes``."""
    return dataclasses.replace(models.default_layers(name), **changes)


def init_train_state(method, model, init_inputs):
    """The train state the loop starts from: variables, the method's optimizer state and
    its fitted slot (e.g. SWAG's moments and samples, which its ``predict_fn`` reads)."""
    variables = dict(model.init(jax.random.key(0), init_inputs, train=False))
    fitted = None if method.init_fitted is None else method.init_fitted(variables)
    params = variables.pop("params")
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=method.optimizer(optax.sgd(0.1), 10).init(params),
        collections=variables,
        fitted=fitted,
    )


@pytest.mark.parametrize("method_name", methods.METHODS.names())
@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_takes_every_method_and_returns_member_logits(name, method_name):
    """Traced (``jax.eval_shape``): every layer type the method sets composes with the
    model; training a few steps runs in ``test_tiny_models_train`` and the configs."""
    method = methods.make(method_name)
    kwargs, _ = TINY[name]
    layers = method.layers(models.default_layers(name))
    model = models.make(name, num_classes=5, **kwargs, layers=layers)
    inputs = tiny_inputs(name, 3)
    key = jax.random.key(2)
    init_inputs = method.init_inputs(inputs) if method.init_inputs else inputs  # MIMO
    state = jax.eval_shape(lambda: init_train_state(method, model, init_inputs))
    variables = state.variables
    logits, extras = jax.eval_shape(lambda s: method.predict_fn(model.apply, s, inputs, key), state)
    assert logits.ndim == 3 and logits.shape[1:] == (3, 5)
    assert all(v.shape[:2] == logits.shape[:2] for v in jax.tree.leaves(extras))
    batch = {"input": inputs, "label": jnp.array([0, 1, 4])}
    rngs = {s: jax.random.fold_in(key, i) for i, s in enumerate(method.rng_streams)}
    loss, (updates, _) = jax.eval_shape(
        lambda v: method.loss_fn(model.apply, v, batch, rngs, step=0, num_train_examples=10),
        variables,
    )
    assert loss.shape == ()
    assert set(updates) <= set(variables) - {"params"}


@pytest.mark.parametrize("name", sorted(TINY))
def test_ensemble_size_gives_one_logit_row_per_member(name):
    kwargs, _ = TINY[name]
    model = models.make(name, num_classes=5, layers=tiny_layers(name, ensemble_size=3), **kwargs)
    inputs = tiny_inputs(name, 2)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), inputs, train=False))
    logits, _ = jax.eval_shape(lambda v: model.apply(v, inputs, train=False), variables)
    assert logits.shape == (3, 2, 5)


CALLS = []


class RecordingDropout(nn.Dropout):
    """nn.Dropout that records ``(rate, deterministic)`` of every call while tracing."""

    def __call__(self, inputs, deterministic=None, rng=None):
        CALLS.append((self.rate, deterministic))
        return super().__call__(inputs, deterministic=deterministic, rng=rng)


@pytest.mark.parametrize("name", sorted(TINY))
def test_dropout_type_and_rate_reach_the_model(name):
    kwargs, _ = TINY[name]
    layers = tiny_layers(name, dropout_rate=0.3, dropout=RecordingDropout)
    model = models.make(name, num_classes=5, layers=layers, **kwargs)
    inputs = tiny_inputs(name, 2)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), inputs, train=False))
    for train in (True, False):
        CALLS.clear()
        jax.eval_shape(
            lambda v, train=train: model.apply(
                v, inputs, train=train, rngs={"dropout": jax.random.key(1)}, mutable=True
            ),
            variables,
        )
        assert CALLS and set(CALLS) == {(0.3, not train)}


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    out = np.asarray(pad_shortcut(jnp.asarray(x), 7, 2))
    assert out.shape == (2, 2, 2, 7)
    np.testing.assert_array_equal(out[..., 2:5], x[:, ::2, ::2, :])
    assert not out[..., :2].any() and not out[..., 5:].any()


def test_attention_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(3))
    expected = np.zeros_like(q)
    for n in range(2):
        for h in range(3):
            scores = q[n, :, h] @ k[n, :, h].T / 2.0  # sqrt(d) = 2
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            weights /= weights.sum(-1, keepdims=True)
            expected[n, :, h] = weights @ v[n, :, h]
    np.testing.assert_allclose(dot_product_attention(q, k, v), expected, rtol=1e-5, atol=1e-6)


def test_lstm_reads_the_last_real_token_so_padding_does_not_matter():
    kwargs, _ = TINY["lstm"]
    model = models.make("lstm", num_classes=4, **kwargs)
    tokens = jnp.array([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0]])
    longer = jnp.pad(tokens, ((0, 0), (0, 6)))
    variables = model.init(jax.random.key(0), tokens, train=False)
    a, _ = model.apply(variables, tokens, train=False)
    b, _ = model.apply(variables, longer, train=False)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    # ... and the answer is the cell run by hand over the real tokens only.
    cell = nn.OptimizedLSTMCell(6)
    params = variables["params"]
    embed = params["Embed_0"]["embedding"]
    carry = cell.initialize_carry(jax.random.key(0), (1, 4))
    for token in (3, 4, 5):
        carry, out = cell.apply(
            {"params": params["OptimizedLSTMCell_0"]}, carry, embed[token][None]
        )
    head = params["DenseHead_0"]["Dense_0"]
    np.testing.assert_allclose(a[0, 0], (out @ head["kernel"] + head["bias"])[0], rtol=1e-5)


def test_lstm_takes_any_flax_rnn_cell():
    kwargs, _ = TINY["lstm"]
    model = models.make(
        "lstm", num_classes=4, layers=tiny_layers("lstm", cell=nn.GRUCell), **kwargs
    )
    tokens = jnp.array([[3, 4, 5, 0]])
    variables = model.init(jax.random.key(0), tokens, train=False)
    assert "GRUCell_0" in variables["params"]
    logits, _ = model.apply(variables, tokens, train=False)
    assert logits.shape == (1, 1, 4)


def test_bad_depths_fail_clearly():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        num_params(models.make("resnet_cifar", num_classes=10, depth=21), (32, 32, 3))
    with pytest.raises(ValueError, match="6n \\+ 4"):
        num_params(models.make("wide_resnet", num_classes=10, depth=27), (32, 32, 3))

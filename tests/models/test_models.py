"""Models keep the [M, B, K] contract on every image size, and take layer types as fields."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import models
from relbench.layers import DenseHead, MCDropout, independent_members
from relbench.layers.members import split_members
from relbench.models import LayerTypes
from tests.models.tiny import TINY


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
@pytest.mark.parametrize("members", [1, 3])
def test_cnn_output_contract(shape, members):
    model = models.make(
        "cnn",
        num_classes=7,
        features=(8, 16),
        hidden_size=16,
        layers=LayerTypes(ensemble_size=members),
    )
    x = jnp.ones((5, *shape))
    variables = model.init(jax.random.key(0), x, train=False)
    (logits, extras), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    # The plain head adds no extras: only the trunk's features travel with the logits.
    assert logits.shape == (members, 5, 7) and set(extras) == {"features"}
    assert extras["features"].shape == (members, 5, 16)
    assert "batch_stats" in updates


def test_mlp_members_see_the_same_batch():
    model = models.make("mlp", num_classes=3, hidden_sizes=(4,), layers=LayerTypes(ensemble_size=2))
    x = jax.random.normal(jax.random.key(1), (6, 5))
    variables = model.init(jax.random.key(0), x, train=False)
    logits, _ = model.apply(variables, x, train=False)
    assert logits.shape == (2, 6, 3)
    np.testing.assert_array_equal(logits[0], logits[1])  # plain layers: members identical


def test_injected_dropout_type_stays_on_at_test_time():
    x = jnp.ones((4, 10))
    plain = models.make(
        "mlp", num_classes=2, hidden_sizes=(16,), layers=LayerTypes(dropout_rate=0.5)
    )
    mc = models.make(
        "mlp",
        num_classes=2,
        hidden_sizes=(16,),
        layers=LayerTypes(dropout_rate=0.5, dropout=MCDropout),
    )
    variables = plain.init(jax.random.key(0), x, train=False)
    eval_plain = [plain.apply(variables, x, train=False)[0] for _ in range(2)]
    np.testing.assert_array_equal(*eval_plain)
    draws = [
        mc.apply(variables, x, train=False, rngs={"dropout": jax.random.key(i)})[0]
        for i in range(2)
    ]
    assert not np.allclose(*draws)


def test_custom_dense_type_is_used():
    calls = []

    class CountingDense(nn.Dense):
        def __call__(self, x):
            calls.append(self.features)
            return super().__call__(x)

    model = models.make(
        "mlp", num_classes=2, hidden_sizes=(8, 4), layers=LayerTypes(dense=CountingDense)
    )
    model.init(jax.random.key(0), jnp.ones((1, 3)), train=False)
    assert calls == [8, 4]  # hidden layers; the head has its own dense field


class RecordingHead(DenseHead):
    """A dense head that sows the features it is given (``[M * B, D]``)."""

    def __call__(self, features, *, train):
        self.sow("intermediates", "head_input", features)
        return super().__call__(features, train=train)


M = 2


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_returns_the_head_input_as_features(name):
    kwargs, shape = TINY[name]
    layers = dataclasses.replace(models.default_layers(name), head=RecordingHead, ensemble_size=M)
    model = models.make(name, num_classes=3, layers=layers, **kwargs)
    key = jax.random.key(1)
    if name == "lstm":
        x = jax.random.randint(key, (4, *shape), 1, 20)
    else:
        x = jax.random.normal(key, (4, *shape))
    variables = model.init(jax.random.key(0), x, train=False)
    (logits, extras), state = model.apply(variables, x, train=False, mutable=["intermediates"])
    (head_input,) = state["intermediates"]["RecordingHead_0"]["head_input"]
    features = extras["features"]
    assert features.ndim == 3 and features.shape[:2] == (M, 4)
    assert logits.shape == (M, 4, 3)
    np.testing.assert_array_equal(features, split_members(head_input, M))


def test_mlp_features_are_the_last_hidden_activation():
    """With per-member hidden layers, member m's features are its own last hidden
    activation, computed by hand from the parameters, and the head reads them."""
    layers = LayerTypes(dense=independent_members(nn.Dense, M), ensemble_size=M)
    model = models.make("mlp", num_classes=3, hidden_sizes=(8, 6), layers=layers)
    x = jax.random.normal(jax.random.key(1), (4, 5))
    variables = model.init(jax.random.key(0), x, train=False)
    logits, extras = model.apply(variables, x, train=False)
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    assert extras["features"].shape == (M, 4, 6)
    for m in range(M):
        h = np.asarray(x, np.float64)
        for layer in ("Dense_0", "Dense_1"):
            h = np.maximum(h @ params[layer]["kernel"][m] + params[layer]["bias"][m], 0.0)
        np.testing.assert_allclose(extras["features"][m], h, rtol=1e-5, atol=1e-6)
        head = params["DenseHead_0"]["Dense_0"]
        np.testing.assert_allclose(
            logits[m], h @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-6
        )
    assert not np.allclose(extras["features"][0], extras["features"][1])  # members differ


def test_resnets_default_to_momentum_0_9_batch_norm_and_the_cnn_to_flax_default():
    flax_default = nn.BatchNorm.__dataclass_fields__["momentum"].default
    assert flax_default == 0.99
    wide = models.default_layers("wide_resnet").norm
    assert wide.func is nn.BatchNorm and wide().momentum == 0.9 and wide().epsilon == 1e-5
    assert models.make("wide_resnet", num_classes=2).layers.norm is wide
    cnn = models.default_layers("cnn").norm
    assert cnn is nn.BatchNorm and cnn().momentum == flax_default

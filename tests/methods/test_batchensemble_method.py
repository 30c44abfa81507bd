"""batchensemble: tiled and split layouts, smoke-trained on 4 fake devices."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import methods, models
from relbench.errors import UsageError
from relbench.models import MLP
from tests.methods.smoke import CNN, smoke_config, train_and_check_members


def test_mlp_tiled_trains_and_predicts_m_distinct_members(tmp_path):
    config = smoke_config("batchensemble", ensemble_size=3)
    results = train_and_check_members(config, tmp_path, members=3)
    assert {"validation", "test", "ood_noise"} <= set(results)


def test_cnn_split_trains_and_predicts_m_distinct_members(tmp_path):
    config = smoke_config("batchensemble", model=CNN, ensemble_size=4, batch_layout="split")
    train_and_check_members(config, tmp_path, members=4)


def _mlp_layers(method):
    return method.layers(models.default_layers("mlp"))


def test_split_layout_gives_each_member_its_own_rows():
    """Under the split layout the model does not tile: member m's logits on its slice
    equal the tiled model's member-m logits on the same examples."""
    split = methods.make("batchensemble", ensemble_size=2, batch_layout="split")
    tile = methods.make("batchensemble", ensemble_size=2)
    x = jax.random.normal(jax.random.key(0), (6, 5))
    split_model = MLP(4, hidden_sizes=(8,), layers=_mlp_layers(split))
    tile_model = MLP(4, hidden_sizes=(8,), layers=_mlp_layers(tile))
    variables = tile_model.init(jax.random.key(1), x, train=False)
    assert jax.tree.structure(split_model.init(jax.random.key(1), x[:1], train=False)) == (
        jax.tree.structure(variables)
    )
    split_logits, _ = split_model.apply(variables, x, train=True)  # [1, 6, K]
    tile_logits, _ = tile_model.apply(variables, x, train=True)  # [2, 6, K]
    np.testing.assert_allclose(split_logits[0, :3], tile_logits[0, :3], rtol=1e-6)
    np.testing.assert_allclose(split_logits[0, 3:], tile_logits[1, 3:], rtol=1e-6)
    state = types.SimpleNamespace(variables=variables)
    predicted, _ = split.predict_fn(split_model.apply, state, x, None)
    np.testing.assert_allclose(predicted, tile_logits, rtol=1e-6)
    with pytest.raises(UsageError, match="divisible"):
        split_model.apply(variables, jnp.zeros((5, 5)), train=True)


def test_bad_hyperparameters_are_usage_errors():
    with pytest.raises(UsageError, match="batch_layout"):
        methods.make("batchensemble", batch_layout="sliced")
    with pytest.raises(UsageError, match="fast_weight_init"):
        methods.make("batchensemble", fast_weight_init="ones")

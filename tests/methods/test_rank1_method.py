"""rank1: the loss is the ELBO per example; S samples per member at test; smoke runs."""

import functools
import types

import jax
import numpy as np
import pytest

from relbench import methods, models
from relbench.errors import UsageError
from relbench.layers import rank1
from relbench.methods.method import rng_dict
from relbench.models import MLP
from tests.methods.smoke import CNN, smoke_config, train_and_check_members

M, B, N = 2, 4, 100


def test_loss_is_nll_plus_kl_over_members_and_examples():
    method = methods.make("rank1", ensemble_size=M, kl_weight=0.5, num_samples=3)
    model = MLP(3, hidden_sizes=(8,), layers=method.layers(models.default_layers("mlp")))
    x = jax.random.normal(jax.random.key(0), (B, 5))
    batch = {"input": x, "label": jax.numpy.arange(B) % 3}
    rngs = rng_dict(jax.random.key(1), method.rng_streams)
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": jax.random.key(2), **rngs}, x
    )
    loss_fn = functools.partial(method.loss_fn, step=0, num_train_examples=N)
    loss, (updates, metrics) = jax.jit(loss_fn, static_argnums=0)(
        model.apply, variables, batch, rngs
    )
    assert rank1.KL_COLLECTION not in updates  # never stored in the train state
    apply = functools.partial(model.apply, train=True, mutable=[rank1.KL_COLLECTION])
    (logits, _), sown = jax.jit(apply)(variables, x, rngs=rngs)
    log_p = np.asarray(jax.nn.log_softmax(logits))  # [M, B, K]
    nll = -np.mean(np.take_along_axis(log_p, np.asarray(batch["label"])[None, :, None], -1))
    kl = float(rank1.kl_sum(sown))
    assert len(jax.tree.leaves(sown)) == 2  # the hidden layer and the head
    np.testing.assert_allclose(loss, nll + 0.5 * kl / (M * N), rtol=1e-5)
    np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-5)  # the total sown KL
    state = types.SimpleNamespace(variables=variables)
    logits, _ = method.predict_fn(model.apply, state, x, jax.random.key(3))
    assert logits.shape == (3 * M, B, 3)  # S samples of M members


def test_bad_hyperparameters_are_usage_errors():
    with pytest.raises(UsageError, match="posterior"):
        methods.make("rank1", posterior="laplace")
    with pytest.raises(UsageError, match="prior_scale"):
        methods.make("rank1", prior_scale=0.0)


def test_cnn_with_cauchy_posterior_trains_and_predicts_samples_of_members(tmp_path):
    config = smoke_config("rank1", model=CNN, ensemble_size=2, num_samples=2, posterior="cauchy")
    train_and_check_members(config, tmp_path, members=4)

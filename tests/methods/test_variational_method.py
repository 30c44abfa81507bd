"""The variational method: ELBO decomposition, KL annealing, sampled prediction."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import methods, models
from relbench.errors import UsageError
from relbench.layers import variational as vl
from relbench.methods.variational import kl_weight
from relbench.metrics.predictive import predictive_log_probs

KEY = jax.random.key(0)


def _model_and_variables(method, name="mlp", input_shape=(6,)):
    kwargs = {"hidden_sizes": (8,)} if name == "mlp" else {"features": (4,), "hidden_size": 8}
    layers = method.layers(models.default_layers(name))
    model = models.make(name, num_classes=3, **kwargs, layers=layers)
    x = jax.random.normal(KEY, (5, *input_shape))
    variables = model.init({"params": KEY, "variational": KEY}, x, train=False)
    return model, variables, x


def test_elbo_is_nll_plus_annealed_kl_over_n():
    method = methods.make("variational", stddev_init=0.1, kl_annealing_steps=10)
    model, variables, x = _model_and_variables(method)
    batch = {"input": x, "label": jnp.array([0, 1, 2, 1, 0])}
    rngs = {"dropout": KEY, "variational": jax.random.key(1)}
    loss, (updates, metrics) = jax.jit(
        lambda v: method.loss_fn(
            model.apply, v, batch, rngs, step=jnp.array(4), num_train_examples=100
        )
    )(variables)
    assert "losses" not in updates
    (logits, _), state = model.apply(variables, x, train=True, rngs=rngs, mutable=["losses"])
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits[0]), batch["label"][:, None], 1).mean()
    # Every variational layer (the hidden layer and the head's) adds its closed-form KL.
    kl = sum(
        vl.NormalPrior().kl(p["kernel_loc"], vl.posterior_scale(p["kernel_raw_scale"]))
        for p in _variational_params(variables["params"])
    )
    assert len(jax.tree.leaves(state["losses"])) == 2
    np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-6)
    np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-5)
    np.testing.assert_allclose(metrics["kl_weight"], 0.5)  # step 4 of 10
    np.testing.assert_allclose(loss, nll + 0.5 * kl / 100, rtol=1e-5)


def _variational_params(tree):
    if "kernel_loc" in tree:
        return [tree]
    return [p for sub in tree.values() if isinstance(sub, dict) for p in _variational_params(sub)]


def test_kl_annealing_is_linear_then_one():
    steps = jnp.arange(6)
    np.testing.assert_allclose(kl_weight(steps, 4), [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(kl_weight(steps, 0), 1.0)


def test_gradients_reach_posterior_mean_and_scale():
    method = methods.make("variational", estimator="reparameterization", stddev_init=0.1)
    model, variables, x = _model_and_variables(method)
    batch = {"input": x, "label": jnp.array([0, 1, 2, 1, 0])}

    def loss(params):
        out = method.loss_fn(
            model.apply,
            {"params": params},
            batch,
            {"dropout": KEY, "variational": KEY},
            step=jnp.array(0),
            num_train_examples=50,
        )
        return out[0]

    grads = jax.jit(jax.grad(loss))(variables["params"])
    for name, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]:
        assert np.all(np.isfinite(leaf)) and np.any(leaf != 0), name


@pytest.mark.parametrize(
    "name, layers", [("mlp", ("dense", "head")), ("cnn", ("conv", "dense", "head"))]
)
def test_prediction_stacks_posterior_samples_on_the_member_axis(name, layers):
    method = methods.make("variational", num_samples=4, stddev_init=0.5, layers=layers)
    shape = (6,) if name == "mlp" else (8, 8, 1)
    model, variables, x = _model_and_variables(method, name, shape)
    predict = lambda v, x, k: method.predict_fn(  # noqa: E731
        model.apply, types.SimpleNamespace(variables=v), x, k
    )
    logits, extras = jax.jit(predict)(variables, x, jax.random.key(9))
    assert logits.shape == (4, 5, 3) and set(extras) == {"features"}
    assert extras["features"].shape[:2] == (4, 5)
    assert not np.allclose(logits[0], logits[1])  # independent posterior samples
    assert np.all(np.isfinite(predictive_log_probs(logits)))


def test_bad_hyperparameters_are_usage_errors():
    with pytest.raises(UsageError, match="unknown variational prior"):
        methods.make("variational", prior="uniform")
    with pytest.raises(UsageError, match="unknown variational estimator"):
        methods.make("variational", estimator="local")
    with pytest.raises(UsageError, match="subset of dense, conv, head, cell"):
        methods.make("variational", layers=("dense", "lstm"))
    with pytest.raises(UsageError, match="prior_stddev"):
        methods.make("variational", prior_stddev=1.0)


def test_scale_mixture_prior_gives_a_finite_monte_carlo_kl():
    method = methods.make("variational", prior="scale_mixture", stddev_init=0.05)
    model, variables, x = _model_and_variables(method)
    batch = {"input": x, "label": jnp.zeros(5, jnp.int32)}
    _, (_, metrics) = jax.jit(
        lambda v: method.loss_fn(
            model.apply,
            v,
            batch,
            {"dropout": KEY, "variational": KEY},
            step=jnp.array(0),
            num_train_examples=10,
        )
    )(variables)
    assert np.isfinite(metrics["kl"])

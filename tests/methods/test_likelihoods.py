"""The likelihoods methods fit: soft-label and sigmoid cross-entropy, Gaussian NLL."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special, stats

from experiments import digits_mlp
from relbench import methods as methods_lib
from relbench import models
from relbench.configs import method_config
from relbench.errors import UsageError
from relbench.layers.gaussian import GaussianHead
from relbench.layers.heads import DenseHead
from relbench.methods.likelihoods import (
    CATEGORICAL,
    Bernoulli,
    Categorical,
    Gaussian,
    for_task,
)
from relbench.methods.method import likelihood_loss
from relbench.nnx.twins import nnx_type
from relbench.train import loop

M, B, K = 2, 6, 3


def _stub(logits, extras=None):
    """An apply_fn that returns fixed model outputs."""

    def apply_fn(variables, inputs, *, train, rngs, mutable):
        assert train
        return (jnp.asarray(logits), extras or {}), {}

    return apply_fn


def _loss(likelihood, apply_fn, batch):
    """The likelihood's loss and metrics (``likelihood_loss``) on fixed model outputs."""
    loss_fn = likelihood_loss(likelihood, ())
    return jax.jit(lambda b: loss_fn(apply_fn, {}, b, {}, step=0, num_train_examples=B))(batch)


def _log_prob(likelihood, logits, batch, extras=None):
    return np.asarray(jax.jit(lambda b: likelihood.log_prob(logits, extras or {}, b))(batch))


def _logits(seed, shape=(M, B, K)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _batch(seed, soft=False):
    rng = np.random.default_rng(seed)
    batch = {"input": np.zeros((B, 1), np.float32), "label": rng.integers(0, K, B)}
    if soft:
        batch["soft_label"] = rng.dirichlet(np.ones(K), B).astype(np.float32)
    return batch


def _log_softmax(logits):
    logits = logits.astype(np.float64)
    return logits - special.logsumexp(logits, axis=-1, keepdims=True)


def _bernoulli_log_prob(logits, targets):
    """sum_k y log p + (1 - y) log(1 - p), p = sigmoid(logit), in float64."""
    p = special.expit(logits.astype(np.float64))
    return np.sum(targets * np.log(p) + (1 - targets) * np.log(1 - p), axis=-1)


def test_soft_labels_replace_one_hot_targets():
    logits = _logits(0)
    batch = _batch(1, soft=True)
    log_prob = _log_prob(CATEGORICAL, logits, batch)
    expected = np.sum(batch["soft_label"][None] * _log_softmax(logits), axis=-1)  # [M, B]
    assert log_prob.shape == (M, B)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)
    loss, (_, metrics) = _loss(CATEGORICAL, _stub(logits), batch)
    assert float(loss) == pytest.approx(-np.mean(expected), rel=1e-5)
    hard, _ = _loss(CATEGORICAL, _stub(logits), _batch(1))
    assert float(hard) != pytest.approx(-np.mean(expected), rel=1e-3)
    assert "accuracy" in metrics


def test_categorical_of_hard_labels_is_the_log_softmax_of_the_label():
    logits = _logits(6)
    batch = _batch(7)
    expected = np.take_along_axis(_log_softmax(logits), batch["label"][None, :, None], -1)
    np.testing.assert_allclose(_log_prob(CATEGORICAL, logits, batch), expected[..., 0], rtol=1e-5)
    _, (_, metrics) = _loss(CATEGORICAL, _stub(logits), batch)
    mean_probs = np.exp(_log_softmax(logits)).mean(0)  # the members' predictive mixture
    accuracy = np.mean(mean_probs.argmax(-1) == batch["label"])
    assert float(metrics["accuracy"]) == pytest.approx(accuracy)


def test_bernoulli_is_the_sigmoid_multi_label_cross_entropy_of_one_hot_labels():
    logits = _logits(2)
    batch = _batch(3)
    y = np.eye(K)[batch["label"]][None]
    expected = _bernoulli_log_prob(logits, y)
    np.testing.assert_allclose(_log_prob(Bernoulli(), logits, batch), expected, rtol=1e-5)
    loss, _ = _loss(Bernoulli(), _stub(logits), batch)
    assert float(loss) == pytest.approx(-np.mean(expected), rel=1e-5)


def test_bernoulli_of_multi_hot_float_labels():
    logits = _logits(8)
    rng = np.random.default_rng(9)
    multi_hot = (rng.uniform(size=(B, K)) < 0.5).astype(np.float32)  # several labels each
    batch = {"input": np.zeros((B, 1), np.float32), "label": multi_hot}
    expected = _bernoulli_log_prob(logits, multi_hot[None])
    np.testing.assert_allclose(_log_prob(Bernoulli(), logits, batch), expected, rtol=1e-5)
    loss, (_, metrics) = _loss(Bernoulli(), _stub(logits), batch)
    assert float(loss) == pytest.approx(-np.mean(expected), rel=1e-5)
    probs = special.expit(logits.astype(np.float64)).mean(0)
    label_accuracy = np.mean((probs > 0.5) == (multi_hot > 0.5))
    assert float(metrics["label_accuracy"]) == pytest.approx(label_accuracy)


def test_gaussian_nll_of_every_member():
    rng = np.random.default_rng(4)
    means = rng.normal(size=(M, B, 2)).astype(np.float32)
    variances = rng.uniform(0.1, 2, size=(M, B, 2)).astype(np.float32)
    batch = {"input": np.zeros((B, 1), np.float32), "label": rng.normal(size=(B, 2))}
    extras = {"variance": jnp.asarray(variances)}
    log_prob = np.sum(stats.norm.logpdf(batch["label"][None], means, np.sqrt(variances)), -1)
    np.testing.assert_allclose(_log_prob(Gaussian(), means, batch, extras), log_prob, rtol=1e-5)
    loss, (_, metrics) = _loss(Gaussian(), _stub(means, extras), batch)
    assert float(loss) == pytest.approx(-np.mean(log_prob), rel=1e-5)
    mse = np.mean((means.mean(0) - batch["label"]) ** 2)
    assert float(metrics["mse"]) == pytest.approx(mse, rel=1e-5)


def test_per_member_targets_score_each_member_against_its_own():
    """MIMO's targets: member m's labels ``[M, B]`` (and soft labels ``[M, B, K]``)."""
    logits = _logits(10)
    rng = np.random.default_rng(11)
    labels = rng.integers(0, K, (M, B))
    log_p = _log_softmax(logits)
    expected = np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    batch = {"label": labels}
    np.testing.assert_allclose(_log_prob(CATEGORICAL, logits, batch), expected, rtol=1e-5)
    soft = rng.dirichlet(np.ones(K), (M, B)).astype(np.float32)
    soft_batch = {"label": labels, "soft_label": soft}
    np.testing.assert_allclose(
        _log_prob(CATEGORICAL, logits, soft_batch), np.sum(soft * log_p, -1), rtol=1e-5
    )
    one_hot = np.eye(K)[labels]  # [M, B, K]
    np.testing.assert_allclose(
        _log_prob(Bernoulli(), logits, batch), _bernoulli_log_prob(logits, one_hot), rtol=1e-5
    )
    multi_hot = (rng.uniform(size=(M, B, K)) < 0.5).astype(np.float32)
    np.testing.assert_allclose(
        _log_prob(Bernoulli(), logits, {"label": multi_hot}),
        _bernoulli_log_prob(logits, multi_hot),
        rtol=1e-5,
    )
    means = _logits(12, (M, B, 2))
    variances = rng.uniform(0.1, 2, size=(M, B, 2)).astype(np.float32)
    targets = rng.normal(size=(M, B, 2)).astype(np.float32)
    np.testing.assert_allclose(
        _log_prob(Gaussian(), means, {"label": targets}, {"variance": variances}),
        np.sum(stats.norm.logpdf(targets, means, np.sqrt(variances)), -1),
        rtol=1e-5,
    )


@pytest.mark.parametrize("smoothing", [0.1, 0.3])
def test_label_smoothing_moves_mass_to_the_uniform_distribution(smoothing):
    logits = _logits(13)
    batch = _batch(14)
    smoothed = (1 - smoothing) * np.eye(K)[batch["label"]] + smoothing / K  # [B, K]
    np.testing.assert_allclose(
        _log_prob(Categorical().smoothed(smoothing), logits, batch),
        np.sum(smoothed[None] * _log_softmax(logits), -1),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        _log_prob(Bernoulli().smoothed(smoothing), logits, batch),
        _bernoulli_log_prob(logits, smoothed[None]),
        rtol=1e-5,
    )
    # A method's label_smoothing is its likelihood's.
    method = methods_lib.make("deterministic", label_smoothing=smoothing)
    model = models.make(
        "mlp",
        num_classes=K,
        hidden_sizes=(4,),
        layers=method.layers(models.default_layers("mlp")),
    )
    x = jax.random.normal(jax.random.key(0), (B, 5))
    variables = model.init(jax.random.key(1), x, train=False)
    loss, _ = method.loss_fn(
        model.apply, variables, {**batch, "input": x}, {}, step=0, num_train_examples=B
    )
    model_logits = np.asarray(model.apply(variables, x, train=False)[0])
    want = -np.mean(np.sum(smoothed[None] * _log_softmax(model_logits), -1))
    assert float(loss) == pytest.approx(want, rel=1e-5)
    for bad in (-0.1, 1.0):
        with pytest.raises(UsageError, match=r"label_smoothing must be in \[0, 1\)"):
            Categorical().smoothed(bad)


def test_likelihood_picks_the_head_and_rejects_bad_settings():
    loc, dense = object(), object()
    head = Gaussian().head(loc, dense)
    assert head.func is GaussianHead
    assert head.keywords == {"loc": loc, "dense": dense, "quantile_coverage": 0.0}
    assert Categorical().head(loc, dense) is loc and Bernoulli().head(loc, dense) is loc
    method = methods_lib.make("mc_dropout", likelihood=Gaussian())
    assert method.layers(models.default_layers("mlp")).head.func is GaussianHead
    assert for_task("regression") == Gaussian() and for_task("classification") is CATEGORICAL
    assert isinstance(for_task("multilabel"), Bernoulli)
    with pytest.raises(UsageError, match="unknown dataset task 'poisson'"):
        for_task("poisson")
    with pytest.raises(UsageError, match="label_smoothing"):
        methods_lib.make("deterministic", likelihood=Gaussian(), label_smoothing=0.1)


def test_the_likelihood_is_not_a_method_hyperparameter():
    assert "likelihood" not in methods_lib.hyperparameters("deterministic")
    with pytest.raises(UsageError, match="has no hyperparameter 'likelihood'"):
        method_config("deterministic", likelihood="gaussian")
    with pytest.raises(UsageError, match="'gaussian' is not a likelihood object"):
        methods_lib.make("deterministic", likelihood="gaussian")
    refusal = "config.method.likelihood is not a hyperparameter"
    config = digits_mlp.get_config("deterministic,smoke")  # an older config's field
    with config.unlocked():
        config.method.likelihood = "categorical"
    with pytest.raises(UsageError, match=refusal):
        loop.build(config)


def test_undefined_pairings_are_refused_with_their_reason():
    reason = methods_lib.UNDEFINED[("heteroscedastic", "gaussian")]
    assert reason and "\n" not in reason
    with pytest.raises(UsageError) as error:
        methods_lib.make("heteroscedastic", likelihood=Gaussian())
    message = str(error.value)
    assert "\n" not in message
    assert "'heteroscedastic' is not defined for the gaussian likelihood" in message
    assert message.endswith(reason)
    for likelihood in (CATEGORICAL, Bernoulli()):  # classes are defined
        methods_lib.make("heteroscedastic", likelihood=likelihood)


def test_heteroscedastic_method_hyperparameters():
    hparams = methods_lib.hyperparameters("heteroscedastic")
    assert {"num_factors", "parameter_efficient", "temperature"} <= set(hparams)
    assert {"train_mc_samples", "test_mc_samples"} <= set(hparams)
    assert "link" not in hparams  # the likelihood picks the link
    method = methods_lib.make("heteroscedastic", num_factors=0, temperature=0.5)
    assert "heteroscedastic" in method.rng_streams
    base = models.default_layers("mlp")
    assert method.layers(base).head.keywords["link"] == "softmax"
    sigmoid = methods_lib.make("heteroscedastic", likelihood=Bernoulli())
    assert sigmoid.layers(base).head.keywords["link"] == "sigmoid"
    with pytest.raises(UsageError, match=r"config\.method\.link for method 'heteroscedastic'"):
        methods_lib.make("heteroscedastic", link="probit")
    with pytest.raises(UsageError, match="temperature"):
        methods_lib.make("heteroscedastic", temperature=0.0)


def test_heteroscedastic_sigmoid_link_trains_on_multi_hot_labels():
    """Under the Bernoulli likelihood the heteroscedastic head's MC sigmoid
    probabilities give a finite loss with gradients on multi-hot labels."""
    method = methods_lib.make(
        "heteroscedastic", likelihood=Bernoulli(), num_factors=2, train_mc_samples=8
    )
    layers = method.layers(models.default_layers("mlp"))
    model = models.make("mlp", num_classes=K, hidden_sizes=(8,), layers=layers)
    x = jax.random.normal(jax.random.key(0), (B, 5))
    rngs = {"heteroscedastic": jax.random.key(1), "dropout": jax.random.key(2)}
    variables = model.init({"params": jax.random.key(3), **rngs}, x, train=False)
    multi_hot = (np.random.default_rng(15).uniform(size=(B, K)) < 0.5).astype(np.float32)
    batch = {"input": x, "label": multi_hot}

    def loss(params):
        out = method.loss_fn(
            model.apply, {"params": params}, batch, rngs, step=0, num_train_examples=B
        )
        return out[0], out[1][1]

    (value, metrics), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    assert np.isfinite(value) and set(metrics) == {"label_accuracy"}
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert any(np.any(g != 0) for g in jax.tree.leaves(grads))


def test_a_label_type_that_does_not_fit_the_likelihood_is_a_usage_error():
    logits = np.zeros((M, B, 1), np.float32)
    regression_batch = {"input": np.zeros((B, 1), np.float32), "label": np.zeros((B, 1))}
    with pytest.raises(UsageError, match="task='regression'"):
        _loss(CATEGORICAL, _stub(logits), regression_batch)
    apply_fn = _stub(logits, {"variance": jnp.ones((M, B, 1))})
    with pytest.raises(UsageError, match="task='classification'"):
        _loss(Gaussian(), apply_fn, _batch(5))


def test_quantile_head_adds_the_pinball_loss_of_its_two_quantiles():
    """``quantile_coverage`` 0.8: the 0.1 and 0.9 quantiles, each scored by the pinball
    loss ``max(tau u, (tau - 1) u)`` of ``u = y - q``, subtracted from the Gaussian's."""
    y = np.array([[1.0], [-2.0]], np.float32)
    mean, variance = np.zeros((1, 2, 1), np.float32), np.ones((1, 2, 1), np.float32)
    lower, upper = np.full((1, 2, 1), -1.0, np.float32), np.full((1, 2, 1), 1.5, np.float32)
    extras = {"variance": variance, "quantile_lower": lower, "quantile_upper": upper}
    got = for_task("regression", quantile_coverage=0.8).log_prob(mean, extras, {"label": y})
    # u_lo = y + 1 = 2, -1 -> 0.1 * 2, 0.9 * 1; u_hi = y - 1.5 = -0.5, -3.5 -> 0.1 * 0.5, 0.1 * 3.5.
    pinball = np.array([0.2 + 0.05, 0.9 + 0.35])
    np.testing.assert_allclose(got[0], stats.norm.logpdf(y[:, 0]) - pinball, rtol=1e-5)
    # The NNX twin of the head predicts them too (the Linen head: in every method's
    # model, tests/posthoc/test_every_method.py).
    head = Gaussian(0.8).head(functools.partial(DenseHead, dense=nn.Dense), nn.Dense)
    extras = nnx_type(head)(5, 3, rngs=nnx.Rngs(0))(jnp.ones((2, 5)))[1]
    assert extras["quantile_lower"].shape == extras["quantile_upper"].shape == (2, 3)
    with pytest.raises(UsageError, match="applies to regression datasets"):
        for_task("classification", quantile_coverage=0.9)
    with pytest.raises(UsageError, match="quantile_coverage must be in"):
        Gaussian(quantile_coverage=1.5)

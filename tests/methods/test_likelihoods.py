"""The likelihoods methods fit: soft-label and sigmoid cross-entropy, Gaussian NLL."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from relbench import methods as methods_lib
from relbench.configs import method_config
from relbench.errors import UsageError
from relbench.layers.gaussian import GaussianHead
from relbench.methods.method import cross_entropy_loss, gaussian_nll_loss, likelihood_parts

M, B, K = 2, 6, 3


def _stub(logits, extras=None):
    """An apply_fn that returns fixed model outputs."""

    def apply_fn(variables, inputs, *, train, rngs, mutable):
        assert train
        return (jnp.asarray(logits), extras or {}), {}

    return apply_fn


def _loss(loss_fn, apply_fn, batch):
    return jax.jit(lambda b: loss_fn(apply_fn, {}, b, {}, step=0, num_train_examples=B))(batch)


def _batch(seed, soft=False):
    rng = np.random.default_rng(seed)
    batch = {"input": np.zeros((B, 1), np.float32), "label": rng.integers(0, K, B)}
    if soft:
        batch["soft_label"] = rng.dirichlet(np.ones(K), B).astype(np.float32)
    return batch


def test_soft_labels_replace_one_hot_targets():
    logits = np.random.default_rng(0).normal(size=(M, B, K)).astype(np.float32)
    batch = _batch(1, soft=True)
    loss, (_, metrics) = _loss(cross_entropy_loss(()), _stub(logits), batch)
    log_p = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    expected = -np.mean(np.sum(batch["soft_label"][None] * log_p, axis=-1))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    hard, _ = _loss(cross_entropy_loss(()), _stub(logits), _batch(1))
    assert float(hard) != pytest.approx(expected, rel=1e-3)
    assert "accuracy" in metrics


def test_sigmoid_link_is_the_multi_label_cross_entropy():
    logits = np.random.default_rng(2).normal(size=(M, B, K)).astype(np.float32)
    batch = _batch(3)
    loss, _ = _loss(cross_entropy_loss((), link="sigmoid"), _stub(logits), batch)
    y = np.eye(K)[batch["label"]][None]
    p = special.expit(logits.astype(np.float64))
    expected = -np.mean(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p), axis=-1))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_gaussian_nll_of_every_member():
    rng = np.random.default_rng(4)
    means = rng.normal(size=(M, B, 2)).astype(np.float32)
    variances = rng.uniform(0.1, 2, size=(M, B, 2)).astype(np.float32)
    batch = {"input": np.zeros((B, 1), np.float32), "label": rng.normal(size=(B, 2))}
    apply_fn = _stub(means, {"variance": jnp.asarray(variances)})
    loss, (_, metrics) = _loss(gaussian_nll_loss(()), apply_fn, batch)
    log_prob = stats.norm.logpdf(batch["label"][None], means, np.sqrt(variances))
    assert float(loss) == pytest.approx(-np.mean(np.sum(log_prob, axis=-1)), rel=1e-5)
    mse = np.mean((means.mean(0) - batch["label"]) ** 2)
    assert float(metrics["mse"]) == pytest.approx(mse, rel=1e-5)


def test_likelihood_picks_the_head_and_rejects_bad_settings():
    assert likelihood_parts("gaussian", ())[0] == {"head": GaussianHead}
    assert (
        methods_lib.make("mc_dropout", likelihood="gaussian").model_kwargs["head"] is GaussianHead
    )
    assert method_config("deterministic", likelihood="gaussian").likelihood == "gaussian"
    with pytest.raises(UsageError, match="unknown likelihood 'poisson'"):
        methods_lib.make("deterministic", likelihood="poisson")
    with pytest.raises(UsageError, match="label_smoothing"):
        methods_lib.make("deterministic", likelihood="gaussian", label_smoothing=0.1)


def test_heteroscedastic_method_hyperparameters():
    hparams = methods_lib.hyperparameters("heteroscedastic")
    assert {"link", "num_factors", "parameter_efficient", "temperature"} <= set(hparams)
    assert {"train_mc_samples", "test_mc_samples"} <= set(hparams)
    method = methods_lib.make("heteroscedastic", num_factors=0, temperature=0.5)
    assert "heteroscedastic" in method.rng_streams
    with pytest.raises(UsageError, match="unknown link 'probit'"):
        methods_lib.make("heteroscedastic", link="probit")
    with pytest.raises(UsageError, match="temperature"):
        methods_lib.make("heteroscedastic", temperature=0.0)


def test_a_label_type_that_does_not_fit_the_likelihood_is_a_usage_error():
    logits = np.zeros((M, B, 1), np.float32)
    regression_batch = {"input": np.zeros((B, 1), np.float32), "label": np.zeros((B, 1))}
    with pytest.raises(UsageError, match="likelihood='gaussian'"):
        _loss(cross_entropy_loss(()), _stub(logits), regression_batch)
    apply_fn = _stub(logits, {"variance": jnp.ones((M, B, 1))})
    with pytest.raises(UsageError, match="likelihood='categorical'"):
        _loss(gaussian_nll_loss(()), apply_fn, _batch(5))

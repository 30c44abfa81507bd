"""ODIN: the perturbation against a hand computation on a linear model, the choice of
epsilon by the in-distribution score, and its OOD AUROC on digits through the loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import configs, posthoc
from relbench.errors import UsageError
from relbench.posthoc import odin
from relbench.train.loop import train_and_evaluate

RNG = np.random.default_rng(0)
W = RNG.normal(size=(3, 4)).astype(np.float32)  # 3 inputs -> 4 classes
B = RNG.normal(size=4).astype(np.float32)
X = RNG.normal(size=(5, 3)).astype(np.float32)


def linear(x):
    return (x @ W + B)[None], {}  # one member, [1, N, K]


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_perturbation_equals_a_hand_computation_on_a_linear_model():
    t, eps = 10.0, 0.3
    p = softmax((X @ W + B) / t)  # [N, K]
    top = np.eye(4)[p.argmax(-1)]
    # d/dx log softmax(f/T)_k* = (1/T) W (e_k* - p) for f = x W + b.
    grad = (top - p) @ W.T / t
    x_prime = X - eps * np.sign(-grad)
    expected = softmax((x_prime @ W + B) / t).max(-1)
    step = posthoc.make("odin", temperature=t, epsilons=(0.0, eps))
    outputs = jax.jit(lambda x: posthoc.predict_with_inputs([step], linear, x))(X)
    got = outputs[1][odin.PERTURBED_MAX_PROB][0]  # [N, 2]
    np.testing.assert_allclose(got[:, 0], p.max(-1), rtol=1e-5)
    np.testing.assert_allclose(got[:, 1], expected, rtol=1e-5)
    assert np.all(got[:, 1] > got[:, 0])  # the step raises every top probability

    # fit picks the epsilon of the largest mean in-distribution score; apply scores by it.
    fitted = step.fit(outputs, {})
    assert int(fitted["index"]) == 1 and float(fitted["epsilon"]) == pytest.approx(eps)
    _, extras = step.apply(outputs, fitted)
    np.testing.assert_allclose(extras["score/odin"][0], -got[:, 1])


def test_odin_refuses_bad_settings_and_token_inputs():
    with pytest.raises(UsageError, match="temperature > 0"):
        posthoc.make("odin", temperature=0.0)
    with pytest.raises(UsageError, match="epsilons >= 0"):
        posthoc.make("odin", epsilons=())
    step = posthoc.make("odin")
    assert step.input_extras is not None
    with pytest.raises(UsageError, match="remove odin from config.posthoc"):
        step.input_extras(linear, jnp.zeros((2, 3), jnp.int32))


def test_odin_beats_max_probability_on_far_ood_digits(tmp_path):
    """The digits MLP after 3 epochs (test accuracy 0.98): ODIN at the paper's defaults
    (T = 1000, epsilon = 0.0014) against the same model's max-probability score on the
    uniform-noise images. Measured: 0.9925 vs 0.9731 (at the config's 30 epochs: 0.9774
    vs 0.9632, the temperature alone 0.9777: on this model the perturbation adds
    nothing, and larger epsilons lose, 0.964 at 0.05)."""
    config = configs.load("experiments/digits_mlp.py:deterministic")
    with config.unlocked():
        config.posthoc = ("odin",)
        config.evaluation.shift_suite = ""
        config.train.num_epochs = 3.0
    far = train_and_evaluate(config, tmp_path)["ood_noise"]
    assert far["auroc/odin"] >= far["auroc/max_prob"] + 0.01, far
    assert far["auroc/max_prob"] == far["raw/auroc/max_prob"]  # the logits are untouched

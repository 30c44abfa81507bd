"""The worked examples run, short: the NNX SNGP CNN in its own optax loop, and the Linen
model made of NNX layers through ``bridge.ToLinen``; both learn."""

import numpy as np

from examples import linen_model_with_nnx_layers as linen_example
from examples import nnx_sngp_cnn as nnx_example


def test_nnx_sngp_cnn_learns_and_its_variance_detects_noise():
    model, dataset = nnx_example.train(epochs=3)
    results = nnx_example.evaluate(model, dataset)
    assert results["accuracy"] > 0.6, results  # 10 classes: chance is 0.1
    assert results["ood_noise_variance_auroc"] > 0.9, results
    # Training moved the GP precision off its initial ridge * I.
    precision = np.asarray(model.head.precision[...])
    assert not np.allclose(precision, np.eye(len(precision)))


def test_linen_model_with_nnx_layers_learns():
    model, variables, dataset, losses = linen_example.train(steps=150)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), losses
    assert linen_example.test_accuracy(model, variables, dataset) > 0.8

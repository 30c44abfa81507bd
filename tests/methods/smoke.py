"""Smoke runs of a method through ``train_and_evaluate`` on the 4 fake CPU devices."""

import ml_collections
import numpy as np

from experiments import digits_mlp
from relbench.train import sharding
from relbench.train.ensemble_eval import load_run
from relbench.train.loop import train_and_evaluate

# Widths only: the method sets the layer types, the dropout rate and the member count.
CNN = {"name": "cnn", "features": (4,), "hidden_size": 16}


def smoke_config(method: str, model: dict | None = None, **hparams) -> ml_collections.ConfigDict:
    """digits_mlp's smoke config (an MLP, or ``model``) for ``method``, a few steps only."""
    config = digits_mlp.get_config(f"{method},smoke")
    with config.unlocked():
        config.method.update(hparams)
        if model is not None:
            config.model = ml_collections.ConfigDict(model)
        config.train.num_epochs = 0.1  # 4 steps of 32
        config.train.checkpoint_every_steps = 2
    return config


def train_and_check_members(config, workdir, members: int) -> dict:
    """Trains a few steps; the evaluation reports diversity, and the final model's
    predictions are ``[M, B, K]`` with M members that differ; returns the results."""
    results = train_and_evaluate(config, workdir)
    assert np.isfinite(results["test"]["nll"])
    for name in ("disagreement", "pairwise_kl", "mutual_information"):  # diversity reported
        assert results["test"][name] > 0.0, name
    run = load_run(workdir, sharding.data_mesh())
    inputs = run.exp.dataset.eval_sets["test"].source.read(np.arange(8))["input"]
    exp = run.exp
    logits, _ = exp.method.predict_fn(exp.model.apply, run.state, inputs, run.eval_key)
    assert logits.shape == (members, 8, exp.dataset.num_classes)
    for m in range(1, members):
        assert not np.allclose(logits[0], logits[m], atol=1e-4)
    return results

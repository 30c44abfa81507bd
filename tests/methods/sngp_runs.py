"""Shared by the sngp method tests: small loop runs and reading their final state."""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from relbench.layers.gaussian_process import LAPLACE
from relbench.layers.random_features import RandomFourierFeatures
from relbench.train import loop

REPO = pathlib.Path(__file__).resolve().parents[2]


def experiment_config(file: str, arg: str) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of ``experiments/<file>``, unlocked for the test to edit."""
    spec = importlib.util.spec_from_file_location("config_module", REPO / "experiments" / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    config.unlock()
    return config


def tiny_moons_config(learning_rate: float, **method) -> ml_collections.ConfigDict:
    """sngp on 64 two-moons examples, 16 per batch (4 steps an epoch), two epochs."""
    config = experiment_config("two_moons_mlp.py", "sngp,smoke")
    config.dataset.update(num_train=64, num_test=32, num_ood=32, plot_resolution=0)
    config.model.hidden_sizes = (16,)
    config.method.update(num_random_features=64, **method)
    config.optimizer.update(name="sgd", learning_rate=learning_rate, weight_decay=0.0)
    config.train.update(
        global_batch_size=16, num_epochs=2.0, checkpoint_every_steps=100, eval_batch_size=32
    )
    return config


def final_state(config: ml_collections.ConfigDict, workdir: pathlib.Path):
    """Trains (``train_and_evaluate``) and restores the final checkpointed TrainState."""
    loop.train_and_evaluate(config, workdir)
    exp = loop.build(config)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shapes = jax.eval_shape(functools.partial(loop.init_state, exp), jax.random.key(0))
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes
    )
    path = workdir / "checkpoints" / str(exp.total_steps) / "state"
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(path.absolute(), abstract)
    return exp, state


def head_features(exp, state, inputs: np.ndarray) -> np.ndarray:
    """The GP head's random features ``[N, F]`` of ``inputs`` under ``state``."""
    _, captured = exp.model.apply(
        state.variables,
        inputs,
        train=False,
        capture_intermediates=lambda m, _: isinstance(m, RandomFourierFeatures),
    )
    (phi,) = jax.tree.leaves(captured["intermediates"])
    return np.asarray(phi, np.float64)


def precision(state) -> np.ndarray:
    (value,) = jax.tree.leaves(state.collections[LAPLACE])
    return np.asarray(value, np.float64)

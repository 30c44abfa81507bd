"""An NNX model trains through the one loop (``relbench train``'s ``train_and_evaluate``)
with ``deterministic`` and ``sngp`` on digits, and passes the learning gate: SNGP's test
accuracy within 2 points of deterministic on the same NNX model, and each method's
eval-mode accuracy on training examples within 3 points of its training accuracy."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

from relbench.configs.files import load
from relbench.metrics import predictive_log_probs
from relbench.train import loop
from relbench.train.checkpoints import Checkpoints

EPOCHS = 8.0


def short_run(method: str, workdir):
    """``experiments/digits_nnx_mlp.py:METHOD``, shorter: 8 epochs instead of 30, the
    dataset's own evaluation sets only (no corruption suite)."""
    config = load(f"experiments/digits_nnx_mlp.py:{method}")
    config.train.num_epochs = EPOCHS
    config.evaluation.shift_suite = ""
    results = loop.train_and_evaluate(config, workdir)
    return config, results


def last_train_accuracy(workdir) -> float:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/accuracy"] for r in records if "train/accuracy" in r][-1]


def eval_mode_train_accuracy(config, workdir, rows: int = 512) -> float:
    """The finished run's state in evaluation mode (``predict_fn``) on training examples."""
    exp = loop.build(config)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shapes = jax.eval_shape(functools.partial(loop.init_state, exp), jax.random.key(0))
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes
    )
    checkpoints = Checkpoints(workdir, 2)
    state = checkpoints.restore_state(checkpoints.latest_step(), abstract)
    checkpoints.close()
    batch = exp.dataset.train.read(np.arange(rows))
    logits, _ = jax.jit(functools.partial(exp.method.predict_fn, exp.model.apply))(
        state, jnp.asarray(batch["input"]), jax.random.key(1)
    )
    predicted = np.argmax(np.asarray(predictive_log_probs(logits)), -1)
    return float(np.mean(predicted == batch["label"]))


def test_nnx_mlp_trains_with_deterministic_and_sngp_and_passes_the_gate(tmp_path):
    accuracy = {}
    for method in ("deterministic", "sngp"):
        workdir = tmp_path / method
        config, results = short_run(method, workdir)
        accuracy[method] = results["test"]["accuracy"]
        train, evaluated = last_train_accuracy(workdir), eval_mode_train_accuracy(config, workdir)
        assert abs(evaluated - train) <= 0.03, (method, evaluated, train)
        assert accuracy[method] > 0.9, (method, accuracy[method])  # it learned
    assert accuracy["sngp"] >= accuracy["deterministic"] - 0.02, accuracy

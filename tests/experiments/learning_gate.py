"""The learning gate: does a method learn on a model, and does it evaluate as it trains?

``gate_accuracies(method, model, workdir)`` trains ``method`` (its ``make`` defaults, and
the config's recipe where it has one) on ``experiments/<model>.py`` for a short budget
through ``train_and_evaluate``, then returns:

* ``test``: test accuracy of the run's ``results.json``;
* ``train_eval_mode``: accuracy of the method's prediction (``predict_fn``, evaluation
  mode, after the after-training steps) on the first ``TRAIN_SUBSET`` training
  examples;
* ``train_train_mode``: accuracy the method's training loss reports (``loss_fn``
  metrics, training mode: dropout on, batch statistics, sampled weights) on the same
  examples with the final parameters.

A method passes when ``test`` is within ``TEST_TOLERANCE`` of ``deterministic``'s on the
same model and ``train_eval_mode`` within ``MODE_TOLERANCE`` of ``train_train_mode``
(no gap between training and evaluation mode: stale batch-norm statistics, a GP head
that predicts at chance, a member axis the prediction mixes up).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np

from relbench import configs
from relbench.methods.method import rng_dict
from relbench.train import sharding
from relbench.train.ensemble_eval import load_run
from relbench.train.loop import named_key, train_and_evaluate
from tests.one_device import on_one_device

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"

#: The models of the gate: the digits configs (an MLP, a batch-norm CNN).
MODELS = ("digits_mlp", "digits_cnn")
#: Test accuracy may trail deterministic's on the same model by at most this.
TEST_TOLERANCE = 0.02
#: Evaluation-mode and training-mode accuracy on training examples agree within this.
MODE_TOLERANCE = 0.03
#: Training examples the two modes are compared on.
TRAIN_SUBSET = 512
#: The short budget: epochs of the config's own schedule (its learning rate, warmup,
#: decay and recipe), evaluated on the dataset's own sets only (no shift suite).
EPOCHS = {"digits_mlp": 6.0, "digits_cnn": 4.0}


@dataclasses.dataclass(frozen=True)
class GateAccuracies:
    test: float
    train_eval_mode: float
    train_train_mode: float


def gate_config(method: str, model: str, posthoc: tuple[str, ...] = (), **hparams):
    """``experiments/<model>.py:<method>`` at the gate's budget, then ``posthoc``."""
    config = configs.load(f"{EXPERIMENTS / model}.py:{method}")
    with config.unlocked():
        config.method.update(hparams)
        config.posthoc = posthoc
        config.posthoc_hparams.knn.k = 5
        config.train.num_epochs = EPOCHS[model]
        config.train.log_every_steps = 10_000
        config.train.checkpoint_every_steps = 10_000
        config.evaluation.shift_suite = ""
    return config


def gate_accuracies(
    method: str, model: str, workdir, posthoc: tuple[str, ...] = (), **hparams
) -> tuple[GateAccuracies, dict]:
    """Trains ``method`` on ``model`` (a name in ``MODELS``) in ``workdir``, then runs the
    ``posthoc`` steps; returns the accuracies of the module docstring (the method's own,
    before the steps) and the run's results. ``hparams`` override the method's defaults
    (for experiments with the gate, never to make a method pass it)."""
    results = train_and_evaluate(gate_config(method, model, posthoc, **hparams), workdir)
    mesh = sharding.data_mesh()
    run = load_run(workdir, mesh)
    exp, state = run.exp, run.state
    batch = exp.dataset.train.read(np.arange(TRAIN_SUBSET))
    labels = batch["label"]
    key = named_key(run.eval_key, "learning_gate")

    @jax.jit
    def accuracies(state, batch, key):
        logits, _ = exp.method.predict_fn(exp.model.apply, state, batch["input"], key)
        probs = jax.nn.softmax(logits, axis=-1).mean(0)  # [M, B, K] -> [B, K]
        _, (_, metrics) = exp.method.loss_fn(
            exp.model.apply,
            {"params": state.params, **state.collections},
            batch,
            rng_dict(key, exp.method.rng_streams),
            step=state.step,
            num_train_examples=len(exp.dataset.train),
        )
        # MIMO's members see inputs of their own in training: each member's accuracy.
        return probs.argmax(-1), metrics.get("accuracy", metrics.get("member_accuracy"))

    predicted, train_mode = jax.device_get(accuracies(state, batch, key))
    test = results["test"]
    accuracies = GateAccuracies(
        test=float(test.get("raw/accuracy", test["accuracy"])),  # before the steps
        train_eval_mode=float(np.mean(predicted == labels)),
        train_train_mode=float(train_mode),
    )
    return accuracies, results


def gate_accuracies_on_one_device(
    method: str, model: str, workdir, posthoc: tuple[str, ...] = ()
) -> tuple[GateAccuracies, dict]:
    """``gate_accuracies`` on one CPU device, in this test process's child
    (``tests.one_device``: the gate's ~30 runs need no 4-way sharding, which the loop's
    own tests cover)."""
    return on_one_device(gate_accuracies, method, model, str(workdir), tuple(posthoc))

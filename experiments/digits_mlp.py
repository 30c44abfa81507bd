"""An MLP on scikit-learn's 8x8 digits (embedded: runs anywhere, no download).

    relbench train --config experiments/digits_mlp.py:mc_dropout --workdir runs/digits

``arg``: ``METHOD[,smoke]``; the method defaults to ``deterministic``. Hardware: one
CPU; about a minute on 2 cores. ``smoke`` trains a few steps only (tests) and evaluates
two corruptions at two severities.

Evaluation: the test set, the validation set, ``digits_c`` (11 corruptions x 5
severities of the test set), and OOD sets ``ood_noise`` (far) and ``ood_heldout``
(digits 8 and 9, held out of training: near).

    relbench sweep --config experiments/digits_mlp.py --workdir runs/digits_sweep

runs ``sweep()``: 8 quasi-random (Halton) points, each with 2 seeds.
"""

import ml_collections

from relbench.configs import (
    dataset_config,
    evaluation_config,
    model_config,
    optimizer_config,
    parse_arg,
    posthoc_hparams_config,
    set_method,
    train_config,
)
from relbench.configs.recipes import SWAG_CONSTANT_LEARNING_RATE
from relbench.sweeps import halton

METHOD_RECIPES = {
    # An RBF length scale matched to the spectral-normalized features' scale; the GP
    # head's small random features train faster with adam.
    "sngp": {
        "method": {"kernel_scale": 0.25},
        "optimizer": {"name": "adam", "learning_rate": 2e-3, "weight_decay": 0.0},
    },
    "swag": SWAG_CONSTANT_LEARNING_RATE,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Digits 8 and 9 never appear in training: they are the near-OOD set `ood_heldout`.
    config.dataset = dataset_config("digits", held_out_classes=(8, 9))
    # Only the widths: methods set the layer types, dropout rate and member count.
    config.model = model_config("mlp", hidden_sizes=(256, 256))
    config.optimizer = optimizer_config(
        name="sgd", learning_rate=0.05, momentum=0.9, weight_decay=1e-4, warmup_steps=20
    )
    # Post-hoc steps after training, e.g. ("temperature_scaling",): fitted on validation.
    config.posthoc = ()
    config.posthoc_hparams = posthoc_hparams_config()
    config.train = train_config(
        options.smoke,
        global_batch_size=64,
        num_epochs=30.0,
        log_every_steps=50,
        checkpoint_every_steps=200,
        max_checkpoints_to_keep=2,
        # The test set (289 examples) and each of its 55 corruptions in 2 batches of 160:
        # 256 would pad them to 512 rows, 40% of the evaluation's compute spent on padding.
        eval_batch_size=160,
        deterministic_ops=False,  # True: XLA's deterministic GPU kernels
    )
    # Every corruption x severity of the test set (`digits_c`), each OOD set pooled with
    # the test set for detection metrics.
    config.evaluation = evaluation_config(shift_suite="digits_c")
    set_method(config, options.method, METHOD_RECIPES)
    if options.smoke:
        config.model.hidden_sizes = (32,)
        config.evaluation.corruptions = ("gaussian_noise", "contrast")
        config.evaluation.severities = (1, 5)
    config.lock()
    return config


def sweep() -> list[dict]:
    """Learning rate, momentum and width from a Halton sequence, each for 2 seeds."""
    space = [
        halton.loguniform("optimizer.learning_rate", 0.005, 0.5),
        halton.uniform("optimizer.momentum", 0.8, 0.95),
        halton.discrete("model.hidden_sizes", [(128,), (256, 256), (512, 512)]),
    ]
    return halton.product(halton.grid("seed", [0, 1]), halton.search(space, 8, seed=0))

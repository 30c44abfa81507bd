"""A small batch-norm CNN on scikit-learn's 8x8 digits (embedded: runs anywhere).

    relbench train --config experiments/digits_cnn.py:sngp --workdir runs/digits_cnn

``arg``: ``METHOD[,smoke]``; the method defaults to ``deterministic``. The convolutional
counterpart of ``digits_mlp.py`` (same data, evaluation and grammar): every method on a
model with convolutions and batch norm, the layers that spectral normalization,
ensembles and Bayesian layers replace. Batch norm uses flax's default momentum (0.99);
the short training (10 epochs, ~200 steps) leaves its running averages far from the
final network's statistics, so the run recomputes them after training (precise batch
norm, ``config.train.precise_batch_norm``). Hardware: one CPU, about a minute on 2
cores for most methods.

Evaluation: the test and validation sets, ``digits_c`` (11 corruptions x 5 severities
of the test set), and OOD sets ``ood_noise`` (far) and ``ood_heldout`` (digits 8 and
9, held out of training: near).
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

METHOD_RECIPES = {
    "swag": SWAG_CONSTANT_LEARNING_RATE,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dataset_config("digits", held_out_classes=(8, 9))
    # Only the widths: methods set the layer types, dropout rate and member count.
    config.model = model_config("cnn", features=(32, 64), hidden_size=128)
    config.optimizer = optimizer_config(
        name="adam", learning_rate=1e-2, weight_decay=0.0, warmup_steps=0
    )
    config.posthoc = ()  # post-hoc steps after training, e.g. ("temperature_scaling",)
    config.posthoc_hparams = posthoc_hparams_config()
    config.train = train_config(
        options.smoke,
        global_batch_size=64,
        num_epochs=10.0,
        log_every_steps=50,
        checkpoint_every_steps=200,
        max_checkpoints_to_keep=2,
        # The test set (289 examples) and each of its 55 corruptions in 2 batches of 160:
        # 256 would pad them to 512 rows, 40% of the evaluation's compute spent on padding.
        eval_batch_size=160,
    )
    config.evaluation = evaluation_config(shift_suite="digits_c")
    set_method(config, options.method, METHOD_RECIPES)
    if options.smoke:
        config.model.features, config.model.hidden_size = (4,), 16
        config.evaluation.corruptions = ("gaussian_noise", "contrast")
        config.evaluation.severities = (1, 5)
    config.lock()
    return config

"""An MLP on two moons: the classic distance-awareness picture (deterministic vs sngp).

    relbench train --config experiments/two_moons_mlp.py:sngp --workdir runs/moons_sngp
    relbench train --config experiments/two_moons_mlp.py --workdir runs/moons_det

``arg``: ``METHOD[,smoke]``; the method defaults to ``deterministic``. Evaluation: the
test set and two OOD sets pooled with it, ``ood_near`` (a ring just outside the data)
and ``ood_far`` (a ring far from it). The run also writes ``uncertainty_surface.png``:
the predictive uncertainty ``1 - max_k p(k | x)`` over the plane with the training
points on top. The model config names only the widths, so that methods set every layer
type, dropout rate and member count. Hardware: one CPU, well under a minute.
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
    # The hidden features of a spectral-normalized MLP are on a small scale: an RBF
    # length scale of 0.1 lets the GP's mean fall to zero (and the variance rise to the
    # prior) within a moon's width of the data.
    "sngp": {"method": {"kernel_scale": 0.1}},
    "swag": SWAG_CONSTANT_LEARNING_RATE,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dataset_config("two_moons", plot_resolution=100)
    config.model = model_config("mlp", hidden_sizes=(128, 128, 128))
    config.optimizer = optimizer_config(
        name="adam", learning_rate=1e-3, weight_decay=1e-4, schedule_kind="cosine"
    )
    config.posthoc = ()  # post-hoc steps need a validation set, which two moons has not
    config.posthoc_hparams = posthoc_hparams_config()
    config.train = train_config(
        global_batch_size=128,
        num_epochs=100.0,
        log_every_steps=100,
        checkpoint_every_steps=400,
        max_checkpoints_to_keep=1,
        eval_batch_size=512,
    )
    config.evaluation = evaluation_config()
    set_method(config, options.method, METHOD_RECIPES)
    if options.smoke:
        config.train.num_epochs = 1.0
        config.train.log_every_steps = 4
        config.train.checkpoint_every_steps = 8
        config.train.global_batch_size = 64
        config.train.eval_batch_size = 128
        config.model.hidden_sizes = (16,)
        config.dataset.plot_resolution = 16
    config.lock()
    return config

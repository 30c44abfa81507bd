"""An MLP on two moons (embedded): the distance-awareness picture in two dimensions.

    relbench train --config experiments/two_moons_mlp.py:mc_dropout --workdir runs/moons

``arg``: ``METHOD[,smoke]``; the method defaults to ``deterministic``. Hardware: one
CPU; well under a minute on 2 cores. ``smoke`` trains a few steps only (tests).

Evaluation: the test set and two OOD sets pooled with it, ``ood_near`` (a ring just
outside the data) and ``ood_far`` (a ring far from it). The model config names only the
widths, so that methods set every layer type, dropout rate and member count.
"""

import ml_collections

from relbench.train.configs import evaluation_config, method_config, optimizer_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = ml_collections.ConfigDict({"name": "two_moons"})
    config.model = ml_collections.ConfigDict({"name": "mlp", "hidden_sizes": (64, 64)})
    config.method = method_config(options.method)
    config.optimizer = optimizer_config(
        name="adam", learning_rate=3e-3, weight_decay=1e-4, warmup_steps=10
    )
    config.train = ml_collections.ConfigDict(
        {
            "global_batch_size": 64,
            "num_epochs": 20.0,
            "log_every_steps": 50,
            "checkpoint_every_steps": 1000,
            "max_checkpoints_to_keep": 1,
            "eval_batch_size": 256,
        }
    )
    config.evaluation = evaluation_config()
    if options.smoke:
        config.train.num_epochs = 0.5
        config.train.log_every_steps = 2
        config.train.global_batch_size = 32
        config.train.eval_batch_size = 64
        config.model.hidden_sizes = (16,)
    config.lock()
    return config

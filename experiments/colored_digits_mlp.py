"""An MLP on the group-shifted digits (``colored_digits``): subpopulation shift.

    relbench train --config experiments/colored_digits_mlp.py --workdir runs/erm
    relbench train --config experiments/colored_digits_mlp.py \\
        --config.dataset.group_weighting=balanced --workdir runs/reweighted

``arg``: ``METHOD[,smoke]``; the method defaults to ``deterministic``. The label is
``digit >= 5``; in training the digit's colour agrees with the label 95% of the time, in
``test`` it is independent of it (``relbench.data.groups``). ``results.json`` reports,
per set, the accuracy and ECE of each of the four (label, colour) groups and
``worst_group_accuracy``, ``worst_group_ece``, ``mean_group_accuracy``.
``group_weighting=balanced`` is group reweighting, ``none`` ERM; both compose with every
method. Hardware: one CPU, seconds.
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

METHOD_RECIPES = {}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dataset_config("colored_digits", correlation=0.95, group_weighting="none")
    config.model = model_config("mlp", hidden_sizes=(64,))
    config.optimizer = optimizer_config(
        name="adam", learning_rate=3e-3, weight_decay=0.0, warmup_steps=0
    )
    config.posthoc = ()
    config.posthoc_hparams = posthoc_hparams_config()
    config.train = train_config(
        options.smoke,
        smoke_epochs=2.0,
        global_batch_size=64,
        num_epochs=10.0,
        log_every_steps=50,
        checkpoint_every_steps=200,
        eval_batch_size=256,
    )
    config.evaluation = evaluation_config()
    set_method(config, options.method, METHOD_RECIPES)
    if options.smoke:
        config.model.hidden_sizes = (32,)
    config.lock()
    return config

"""Gaussian regression with an MLP on the 1-D heteroscedastic toy (known noise).

    relbench train --config experiments/heteroscedastic_toy_mlp.py:mc_dropout --workdir runs/toy

``arg``: ``METHOD[,smoke]`` (default ``deterministic``): any method, fitting the
dataset's Gaussian likelihood (a mean-and-variance head and the Gaussian NLL;
``heteroscedastic`` is refused with its reason). Metrics: NLL, RMSE, CRPS and interval
coverage (in units of the target); experiments/diabetes_mlp.py has the diabetes data.
Hardware: one CPU, well under a minute on 2 cores.
"""

import ml_collections

from relbench.configs import (
    dataset_config,
    evaluation_config,
    method_config,
    model_config,
    optimizer_config,
    parse_arg,
    posthoc_hparams_config,
    train_config,
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dataset_config("heteroscedastic_toy")
    config.model = model_config("mlp", hidden_sizes=(64, 64))
    config.method = method_config(options.method)
    config.optimizer = optimizer_config(name="adam", learning_rate=1e-2, warmup_steps=0)
    config.posthoc = ()  # post-hoc steps after training, e.g. ("temperature_scaling",)
    config.posthoc_hparams = posthoc_hparams_config()
    config.evaluation = evaluation_config()  # the dataset's own sets
    config.train = train_config(
        options.smoke,
        smoke_epochs=0.25,
        global_batch_size=64,
        num_epochs=40.0,
        log_every_steps=50,
        checkpoint_every_steps=500,
        max_checkpoints_to_keep=2,
        eval_batch_size=256,
    )
    if options.smoke:
        config.model.hidden_sizes = (16,)
    config.lock()
    return config

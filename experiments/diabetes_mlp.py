"""Gaussian regression on scikit-learn's diabetes data (442 patients, embedded).

    relbench train --config experiments/diabetes_mlp.py:mc_dropout --workdir runs/diabetes

``arg``: ``METHOD[,smoke]`` (default ``deterministic``): any method, fitting the
dataset's Gaussian likelihood (a mean-and-variance head; ``heteroscedastic``, a model of
label noise over classes, is refused with its reason). With 309 training examples a
heteroscedastic head overfits its variance quickly (test NLL in the hundreds after 40
epochs at a learning rate of 1e-2), hence the small network, learning rate and epoch
count. csgld's default step size (0.5, tuned for classification) diverges on this
Gaussian likelihood (test CRPS 2.66 after 20 epochs, against 0.433 at 0.05): its recipe
here takes 0.05.
``--config.likelihood.quantile_coverage=0.9`` gives the head the 5% and 95% quantiles
(pinball loss) that ``conformal_cqr`` conformalizes.
Metrics are in units of the target's training standard deviation. Hardware: one CPU,
seconds.
"""

import ml_collections

from relbench.configs import (
    dataset_config,
    evaluation_config,
    likelihood_config,
    model_config,
    optimizer_config,
    parse_arg,
    posthoc_hparams_config,
    set_method,
    train_config,
)

RECIPES = {"csgld": {"method": {"step_size": 0.05}}}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dataset_config("diabetes")
    config.model = model_config("mlp", hidden_sizes=(32,))
    set_method(config, options.method, RECIPES)
    # quantile_coverage=0.9 adds the quantile head conformal_cqr needs.
    config.likelihood = likelihood_config()
    config.optimizer = optimizer_config(name="adam", learning_rate=1e-3, warmup_steps=0)
    config.posthoc = ()  # post-hoc steps after training, e.g. ("temperature_scaling",)
    config.posthoc_hparams = posthoc_hparams_config()
    config.evaluation = evaluation_config()  # the dataset's own sets
    config.train = train_config(
        options.smoke, num_epochs=50.0, global_batch_size=32, eval_batch_size=128
    )
    config.lock()
    return config

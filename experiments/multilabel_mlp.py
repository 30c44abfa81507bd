"""An MLP on multi-label data: scikit-learn's make_multilabel_classification (embedded).

    relbench train --config experiments/multilabel_mlp.py:deep_ensemble --workdir runs/ml

``arg``: ``METHOD[,smoke]`` (default ``deterministic``): any method, fitting the
dataset's Bernoulli likelihood (K = 6 independent sigmoids; heteroscedastic takes the
sigmoid link, SNGP's per-class precision the sigmoid's Hessian weights). 1,050
training examples of 20 standardized word counts.

Evaluation (``relbench.metrics.multilabel``): the test and validation sets (summed
binary NLL and Brier, Hamming and subset accuracy, F1, ECE over every binary
prediction, mean average precision and macro AUROC, diversity), and the OOD sets
``ood_far`` (test features shifted by 5 training standard deviations) and
``ood_shuffled`` (every test feature column permuted on its own), each pooled with
the test set for detection metrics. Hardware: one CPU, seconds.
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
    config.dataset = dataset_config("multilabel_toy")
    # Only the widths: methods set the layer types, dropout rate and member count.
    config.model = model_config("mlp", hidden_sizes=(64, 64))
    config.optimizer = optimizer_config(
        name="adam", learning_rate=5e-3, weight_decay=1e-4, warmup_steps=0
    )
    config.posthoc = ()  # post-hoc steps after training
    config.posthoc_hparams = posthoc_hparams_config()
    config.evaluation = evaluation_config()  # the dataset's own sets
    config.train = train_config(
        options.smoke,
        num_epochs=20.0,
        global_batch_size=64,
        log_every_steps=50,
        checkpoint_every_steps=400,
        eval_batch_size=256,
    )
    set_method(config, options.method, METHOD_RECIPES)
    if options.smoke:
        config.model.hidden_sizes = (16,)
    config.lock()
    return config

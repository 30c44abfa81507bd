"""Pool-based active learning on the embedded 8x8 digits: an MLP, any method.

    relbench active-learn --config experiments/digits_active_learning.py:mc_dropout \\
        --config.active_learning.acquisition=bald --workdir runs/al_bald_0
    relbench report runs/al_* --out report/    # learning curves over acquisitions

``arg``: ``METHOD[,smoke]``; the method defaults to ``mc_dropout`` (BALD and BatchBALD
need members or samples). 20 random labels to start, 10 acquired per round for 10
rounds, retraining from scratch each round (``config.active_learning.training``:
``fine_tune`` continues from the previous round). The learning curve is the test set's
accuracy, NLL and ECE against the number of labels (``learning_curve.json``).
``smoke`` runs 2 rounds with a width-64 MLP (tests); as a plain training config
(``relbench train``) the file trains on the whole training set. Hardware: one CPU,
a few minutes.
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
from relbench.tasks.active_learning import active_learning_config

METHOD_RECIPES = {}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg, default_method="mc_dropout")
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dataset_config("digits", num_ood=64)
    config.model = model_config("mlp", hidden_sizes=(128,))
    config.optimizer = optimizer_config(
        name="adam", learning_rate=3e-3, weight_decay=0.0, warmup_steps=0, schedule_kind="constant"
    )
    config.posthoc = ()
    config.posthoc_hparams = posthoc_hparams_config()
    # As a plain training config (relbench train): the whole training set.
    config.train = train_config(
        options.smoke,
        global_batch_size=32,
        num_epochs=30.0,
        log_every_steps=100,
        checkpoint_every_steps=1000,
        max_checkpoints_to_keep=1,
        eval_batch_size=512,
    )
    config.evaluation = evaluation_config()
    config.active_learning = active_learning_config(
        acquisition="bald",
        initial_labels=20,
        acquisition_batch=10,
        num_rounds=10,
        # Epochs of the labelled set: 20 labels -> 188 steps, 120 labels -> 1125 steps.
        num_epochs=300.0,
    )
    set_method(config, options.method, METHOD_RECIPES)
    if options.smoke:
        config.model.hidden_sizes = (64,)
        config.active_learning.num_rounds = 2
        config.train.log_every_steps = 100
        config.train.checkpoint_every_steps = 200
        config.train.eval_batch_size = 512
    config.lock()
    return config

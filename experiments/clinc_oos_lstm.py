"""An LSTM intent classifier on CLINC150 with out-of-scope queries as OOD, method as arg.

    relbench train --config experiments/clinc_oos_lstm.py:mc_dropout --workdir runs/clinc \
        --config.dataset.data_file=/data/clinc/data_full.json

``arg``: ``METHOD[,smoke]`` (default ``deterministic``); ``smoke`` trains a tiny LSTM
for 2 steps on mock queries (tests, any CPU). Data: the authors' ``data_full.json``
(https://github.com/clinc/oos-eval); the TFDS catalogue does not carry CLINC150.
Evaluation: in-scope validation and test accuracy / NLL / ECE, and OOD detection of the
out-of-scope test queries.

Hardware assumed: one CPU or GPU; minutes. The global batch (64) is independent of the
device count.

Targets: none published for this architecture. Uncertainty Baselines [1] reports
CLINC results for BERT (``baselines/clinc_intent``); this config is the small,
dependency-free text benchmark on which the Bayesian LSTM cell plugs in through
``config.model.cell``.

References:
  [1] Nado et al. Uncertainty Baselines. 2021. https://arxiv.org/abs/2106.04015
  [2] Larson et al. An Evaluation Dataset for Intent Classification and Out-of-Scope
      Prediction. EMNLP 2019. https://arxiv.org/abs/1909.02027
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
from relbench.configs.recipes import smoke_train_settings

METHOD_RECIPES = {
    "mc_dropout": {"method": {"dropout_rate": 0.1}},
    "variational": {"method": {"layers": ("cell", "head")}},  # the Bayesian LSTM
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg)
    vocab_size = ml_collections.FieldReference(8192)  # the dataset's and the model's
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dataset_config(
        "clinc_oos", data_file="data/clinc/data_full.json", max_length=32, vocab_size=vocab_size
    )
    config.model = model_config("lstm", vocab_size=vocab_size, embed_dim=128, hidden_size=256)
    config.optimizer = optimizer_config(
        name="adam", learning_rate=1e-3, schedule_kind="cosine", grad_clip_norm=1.0
    )
    config.train = train_config(
        global_batch_size=64,
        num_epochs=20.0,
        log_every_steps=50,
        checkpoint_every_steps=500,
        max_checkpoints_to_keep=2,
        eval_batch_size=512,
    )
    config.posthoc = ()  # post-hoc steps after training, e.g. ("temperature_scaling",)
    config.posthoc_hparams = posthoc_hparams_config()
    config.evaluation = evaluation_config()  # the dataset's own sets
    set_method(config, options.method, METHOD_RECIPES)
    if options.smoke:
        config.dataset.mock_num_examples = 32
        config.dataset.max_length = 8
        config.dataset.vocab_size = 96
        config.model.embed_dim, config.model.hidden_size = 8, 8
        smoke_train_settings(config, steps=2, batch=16)
    config.lock()
    return config

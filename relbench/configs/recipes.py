"""Building blocks of the experiment configs that reproduce published recipes.

A recipe is a base config plus, per method, the hyperparameters its paper or
Uncertainty Baselines [1] used. Those per-method settings are a dict keyed by method
name and applied only when that method is chosen, so a recipe names methods that a
checkout may not have yet without breaking the others.

Conventions shared by the recipes:

* The learning rate is ``base_lr * global_batch_size / base_batch`` (linear scaling
  [2]); the global batch size is a config value, independent of the device count.
* Uncertainty Baselines adds ``l2 * sum(kernel ** 2)`` to the loss; its gradient is
  ``2 * l2 * kernel``, so the optimizer's coupled ``weight_decay`` is ``2 * l2``.
* Step decay epochs become fractions of training (``decay_epochs_fraction``).

References:
  [1] Nado et al. Uncertainty Baselines: Benchmarks for Uncertainty & Robustness in
      Deep Learning. 2021. https://arxiv.org/abs/2106.04015
  [2] Goyal et al. Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour. 2017.
      https://arxiv.org/abs/1706.02677
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import ml_collections

from relbench.configs.sections import MethodRecipes

#: SWAG on a short embedded run: collect over the second half of training at the
#: learning rate it reaches halfway (a cosine decay to zero would stop the iterates
#: that SWAG's moments average), as the SWA/SWAG papers' constant collection rate.
SWAG_CONSTANT_LEARNING_RATE = {
    "method": {"start_fraction": 0.5},
    "optimizer": {"schedule_kind": "step", "decay_epochs_fraction": (0.5,)},
}


def scaled_learning_rate(base_lr: float, global_batch_size: int, base_batch: int) -> float:
    """Linear scaling [2]: ``base_lr`` per ``base_batch`` examples."""
    return base_lr * global_batch_size / base_batch


def decay_fractions(epochs: Sequence[float], num_epochs: float) -> tuple[float, ...]:
    """Step-decay epochs -> fractions of training."""
    return tuple(e / num_epochs for e in epochs)


def warmup_steps(epochs: float, num_train_examples: int, global_batch_size: int) -> int:
    return math.ceil(epochs * num_train_examples / global_batch_size)


def smoke_train_settings(config: ml_collections.ConfigDict, steps: int, batch: int) -> None:
    """Shrinks ``config.train`` to ``steps`` steps of ``batch`` examples on ``steps * batch``
    mock examples (one epoch), logging every step."""
    config.train.num_epochs = 1.0
    config.train.global_batch_size = batch
    config.train.eval_batch_size = batch
    config.train.log_every_steps = 1
    config.train.checkpoint_every_steps = steps
    config.optimizer.warmup_steps = 0


def smoke_corruptions(tfds_name: str) -> tuple[str, ...]:
    """A smoke config's corruptions: a native one, and one only the dataset's corruption
    benchmark has (frost), where it has a benchmark."""
    from relbench.data.tfds import PRESETS  # imports TFDS: only for TFDS recipes

    has_benchmark = PRESETS[tfds_name].corrupted is not None
    return ("gaussian_noise", "frost") if has_benchmark else ("gaussian_noise",)


def cifar_wrn28_10(
    tfds_name: str,
    arg: str | None,
    *,
    l2: float,
    ood: Mapping[str, str],
    method_recipes: MethodRecipes,
) -> ml_collections.ConfigDict:
    """The Uncertainty Baselines CIFAR recipe [1] (``baselines/cifar/deterministic.py``):
    WRN-28-10, SGD with Nesterov momentum 0.9, global batch 512 (64 per core on 8
    cores), base learning rate 0.1 per 128 examples, 1 warmup epoch, step decay by 0.2
    at epochs 60/120/160 of 200, L2 ``l2`` on kernels; crop+flip augmentation.
    """
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

    options = parse_arg(arg)
    batch, epochs, num_train = 512, 200.0, 50_000
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.dataset = dataset_config(
        tfds_name,
        ood=dict(ood),
        in_memory=True,  # the decoded, normalized training split: 614 MB
    )
    config.model = model_config("wide_resnet", depth=28, width_multiplier=10)
    # Every corruption at every severity: CIFAR-10-C where prepared (its 19
    # corruptions), the native ones otherwise (CIFAR-100 has no TFDS benchmark).
    config.evaluation = evaluation_config(shift_suite=f"{tfds_name}_c", corruptions=("all",))
    config.optimizer = optimizer_config(
        name="sgd",
        learning_rate=scaled_learning_rate(0.1, batch, 128),
        momentum=0.9,
        nesterov=True,
        weight_decay=2 * l2,
        schedule_kind="step",
        warmup_steps=warmup_steps(1, num_train, batch),
        decay_epochs_fraction=decay_fractions((60, 120, 160), epochs),
        decay_factor=0.2,
    )
    config.train = train_config(
        global_batch_size=batch,
        num_epochs=epochs,
        log_every_steps=100,
        checkpoint_every_steps=1000,
        max_checkpoints_to_keep=2,
        data_threads=8,  # decoding and augmenting on grain threads
        eval_batch_size=1000,
    )
    config.posthoc = ()  # post-hoc steps after training, e.g. ("temperature_scaling",)
    config.posthoc_hparams = posthoc_hparams_config()
    set_method(config, options.method, method_recipes)
    if options.smoke:
        config.dataset.mock_num_examples = 32
        config.evaluation.corruptions = smoke_corruptions(tfds_name)
        config.evaluation.severities = (1, 5)
        config.dataset.ood = dict(list(ood.items())[:1])
        config.model.depth, config.model.width_multiplier = 10, 1
        smoke_train_settings(config, steps=2, batch=16)
    config.lock()
    return config


def user_files_config(dataset: str, model: dict, arg: str | None) -> ml_collections.ConfigDict:
    """The config of ``experiments/user_data/*.py``: a dataset of the user's files
    (``relbench.data.files``, every field settable from the command line), ``model``,
    adam, 20 epochs of batch 128; ``smoke``: 2 epochs of batch 16.

    These configs live apart from ``experiments/*.py``, whose every file x method the
    config tests build and train: they need the user's files to build."""
    from relbench.configs import (
        dataset_config,
        evaluation_config,
        optimizer_config,
        parse_arg,
        posthoc_hparams_config,
        set_method,
        train_config,
    )

    options = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dataset_config(dataset)
    config.model = ml_collections.ConfigDict(model)
    config.optimizer = optimizer_config(name="adam", learning_rate=1e-3, warmup_steps=0)
    config.posthoc = ()  # post-hoc steps after training, e.g. ("temperature_scaling",)
    config.posthoc_hparams = posthoc_hparams_config()
    config.train = train_config(
        global_batch_size=128, num_epochs=20.0, log_every_steps=50, eval_batch_size=512
    )
    # shift_suite (e.g. "my_c") corrupts the test set; ood_reference pools OOD sets with it.
    config.evaluation = evaluation_config(shift_suite="")
    set_method(config, options.method, {})
    if options.smoke:
        config.train.num_epochs = 2.0
        config.train.global_batch_size = 16
        config.train.eval_batch_size = 32
        config.train.log_every_steps = 2
        config.train.checkpoint_every_steps = 1000
    config.lock()
    return config

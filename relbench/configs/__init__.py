"""Experiment configs: loading config files, building their sections, and recipes.

``experiments/*.py`` import the section builders from here; ``relbench.configs.recipes``
holds the building blocks of the configs that reproduce published recipes.
"""

from relbench.configs.files import apply_override, load, load_module
from relbench.configs.sections import (
    SMOKE_TRAIN,
    ConfigArg,
    MethodRecipes,
    dataset_config,
    evaluation_config,
    likelihood_config,
    method_config,
    model_config,
    optimizer_config,
    parse_arg,
    posthoc_hparams_config,
    set_method,
    train_config,
)

__all__ = [
    "SMOKE_TRAIN",
    "ConfigArg",
    "MethodRecipes",
    "apply_override",
    "dataset_config",
    "evaluation_config",
    "likelihood_config",
    "load",
    "load_module",
    "method_config",
    "model_config",
    "optimizer_config",
    "parse_arg",
    "posthoc_hparams_config",
    "set_method",
    "train_config",
]

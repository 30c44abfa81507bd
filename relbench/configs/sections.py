"""The sections of an experiment config, each with every field of its factory.

A config file defines ``get_config(arg)``; ``arg`` is a comma-separated list whose
first item may name the method and whose other items are flags such as ``smoke``:
``experiments/digits_mlp.py:mc_dropout,smoke``. The builders here give each section
(``config.method``, ``config.optimizer``, ``config.posthoc_hparams``,
``config.evaluation``, ``config.train``) every field its factory takes, with the
factory's defaults, so that every field can be overridden from the command line and a
misspelt one is an error.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import ml_collections

from relbench import methods as methods_lib
from relbench import posthoc as posthoc_lib
from relbench.errors import UsageError
from relbench.train import optimizers


@dataclasses.dataclass(frozen=True)
class ConfigArg:
    method: str
    smoke: bool


def parse_arg(arg: str | None, default_method: str = "deterministic") -> ConfigArg:
    """``"mc_dropout,smoke"`` -> ``ConfigArg("mc_dropout", smoke=True)``."""
    items = [item.strip() for item in (arg or "").split(",") if item.strip()]
    flags = {"smoke"}
    unknown_flags = [i for i in items[1:] if i not in flags]
    if unknown_flags:
        raise UsageError(
            f"unknown config argument '{unknown_flags[0]}'; after the method name only "
            f"{', '.join(sorted(flags))} is accepted"
        )
    method = items[0] if items and items[0] not in flags else default_method
    methods_lib.METHODS.get(method)  # fails early, naming the valid methods
    return ConfigArg(method=method, smoke="smoke" in items)


def method_config(name: str, **overrides) -> ml_collections.ConfigDict:
    """``config.method``: the method's name and all its hyperparameters (defaults from
    ``make``), so each one can be overridden from the command line."""
    hparams = methods_lib.hyperparameters(name)
    unknown = sorted(set(overrides) - set(hparams))
    if unknown:
        raise UsageError(f"method '{name}' has no hyperparameter '{unknown[0]}'")
    return ml_collections.ConfigDict({"name": name, **hparams, **overrides})


#: Sub-configs a method recipe may override: ``{"optimizer": {...}, "train": {...}, ...}``.
MethodRecipes = Mapping[str, Mapping[str, Mapping[str, Any]]]


def set_method(
    config: ml_collections.ConfigDict, method: str, recipes: MethodRecipes
) -> ml_collections.ConfigDict:
    """Sets ``config.method`` and applies ``recipes[method]`` (nothing for other methods).

    ``recipes[method]["method"]`` holds hyperparameters of ``relbench.methods.<method>``;
    every other key names a sub-config (``optimizer``, ``train``, ``model``, ...) whose
    existing fields it overrides. ``config.model`` names widths and depths only: the
    method sets layer types, dropout rate and member count.
    """
    recipe = dict(recipes.get(method, {}))
    config.method = method_config(method, **recipe.pop("method", {}))
    for section, overrides in recipe.items():
        for key, value in overrides.items():
            if key not in config[section]:
                raise UsageError(f"recipe for '{method}' sets unknown key config.{section}.{key}")
            config[section][key] = value
    return config


def optimizer_config(**overrides) -> ml_collections.ConfigDict:
    """``config.optimizer`` with every field of ``optimizers.make`` present."""
    fields = {
        n: p.default
        for n, p in inspect.signature(optimizers.make).parameters.items()
        if n not in ("total_steps", "decay_mask")
    }
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UsageError(f"optimizer has no setting '{unknown[0]}'")
    return ml_collections.ConfigDict({**fields, **overrides})


def posthoc_hparams_config(**overrides) -> ml_collections.ConfigDict:
    """``config.posthoc_hparams``: every post-hoc step's hyperparameters (defaults from
    its ``make``), keyed by step name, so that ``config.posthoc`` can name any step and
    each hyperparameter can be overridden; ``overrides`` maps step names to dicts."""
    steps = {name: posthoc_lib.hyperparameters(name) for name in posthoc_lib.POSTHOC_STEPS.names()}
    for name, values in overrides.items():
        posthoc_lib.POSTHOC_STEPS.get(name)
        unknown = sorted(set(values) - set(steps[name]))
        if unknown:
            raise UsageError(f"post-hoc step '{name}' has no hyperparameter '{unknown[0]}'")
        steps[name].update(values)
    return ml_collections.ConfigDict(steps)


def likelihood_config(**overrides) -> ml_collections.ConfigDict:
    """``config.likelihood``: the settings of the likelihood the dataset's task picks,
    every keyword of ``relbench.methods.likelihoods.for_task`` but the task."""
    from relbench.methods.likelihoods import for_task

    fields = {n: p.default for n, p in inspect.signature(for_task).parameters.items()}
    del fields["task"]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UsageError(f"likelihood has no setting '{unknown[0]}'")
    return ml_collections.ConfigDict({**fields, **overrides})


def evaluation_config(**overrides) -> ml_collections.ConfigDict:
    """``config.evaluation``: the evaluation suite, every field of ``EvaluationSettings``."""
    from relbench.train.evaluation import EvaluationSettings

    fields = {f.name: f.default for f in dataclasses.fields(EvaluationSettings)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UsageError(f"evaluation has no setting '{unknown[0]}'")
    return ml_collections.ConfigDict({**fields, **overrides})


_PLAIN = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    """Whether a default can live in a config (and be set from the command line)."""
    if isinstance(value, tuple | list):
        return all(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def factory_config(registry, name: str, overrides: Mapping[str, Any], exclude=()):
    """A section with the factory's name and every keyword argument it takes with a
    default (``Registry.defaults``; code-valued defaults such as activations stay in
    code), then ``overrides``; an unknown override is an error naming it."""
    fields = {k: v for k, v in registry.defaults(name, exclude).items() if _plain(v)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UsageError(f"{registry.kind} '{name}' has no setting '{unknown[0]}'")
    return ml_collections.ConfigDict({"name": name, **fields, **overrides})


def dataset_config(name: str, **overrides) -> ml_collections.ConfigDict:
    """``config.dataset``: the dataset's name and every keyword argument of its factory
    (the factory's defaults, then ``overrides``), so each can be set from the command
    line: ``--config.dataset.path=data.npz``."""
    from relbench import data

    return factory_config(data.DATASETS, name, overrides)


def model_config(name: str, **overrides) -> ml_collections.ConfigDict:
    """``config.model``: the model's name and its widths and depths (every field but the
    layer types and the class count, which the method and the dataset set)."""
    from relbench import models

    return factory_config(models.MODELS, name, overrides, exclude=("layers", "num_classes"))


SMOKE_TRAIN = {
    "log_every_steps": 2,
    "checkpoint_every_steps": 4,
    "global_batch_size": 32,
    "eval_batch_size": 64,
}


def train_config(
    smoke: bool = False, smoke_epochs: float = 0.5, **settings
) -> ml_collections.ConfigDict:
    """``config.train``: every field of the loop's ``LoopSettings`` (its defaults, then
    ``settings``); ``smoke`` trains ``smoke_epochs`` in small batches, logging and
    checkpointing every few steps (for tests)."""
    from relbench.train.loop import LoopSettings

    fields = {f.name: f.default for f in dataclasses.fields(LoopSettings)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise UsageError(f"the loop has no setting config.train.{unknown[0]}")
    if smoke:
        settings.update(SMOKE_TRAIN, num_epochs=smoke_epochs)
    return ml_collections.ConfigDict({**fields, **settings})

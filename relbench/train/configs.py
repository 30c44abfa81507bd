"""Helpers for experiment config files (``experiments/*.py``).

A config file defines ``get_config(arg)``; ``arg`` is a comma-separated list whose
first item may name the method and whose other items are flags such as ``smoke``:
``experiments/digits_mlp.py:mc_dropout,smoke``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import pathlib

import ml_collections

from relbench import methods as methods_lib
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


def optimizer_config(**overrides) -> ml_collections.ConfigDict:
    """``config.optimizer`` with every field of ``optimizers.make`` present."""
    fields = {
        n: p.default
        for n, p in inspect.signature(optimizers.make).parameters.items()
        if n != "total_steps"
    }
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UsageError(f"optimizer has no setting '{unknown[0]}'")
    return ml_collections.ConfigDict({**fields, **overrides})


def load(spec: str) -> ml_collections.ConfigDict:
    """Loads ``"experiments/file.py[:arg]"`` the way ``--config`` does (a locked config)."""
    path, _, arg = spec.partition(":")
    module = load_module(path)
    config = module.get_config(arg) if arg else module.get_config()
    config.lock()
    return config


def load_module(path: str):
    """Executes the config file at ``path``; a missing or broken file is a UsageError."""
    if not pathlib.Path(path).is_file():
        raise UsageError(f"config file '{path}' does not exist; check the --config path")
    module_spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except UsageError:
        raise
    except Exception as error:
        raise UsageError(
            f"config file '{path}' fails to load: {type(error).__name__}: {error}"
        ) from None
    return module


def apply_override(config: ml_collections.ConfigDict, dotted: str, text: str) -> None:
    """Sets ``config.<dotted>`` from command-line text (a Python literal, else a string).

    The key must exist and the value must fit its type, as with ml_collections'
    ``config_flags``; anything else is a UsageError naming the key.
    """
    *parents, leaf = dotted.split(".")
    node = config
    try:
        for name in parents:
            node = node[name]
        if leaf not in node:
            raise KeyError(leaf)
    except (KeyError, TypeError):
        raise UsageError(
            f"unknown key config.{dotted}; check the spelling against the config file"
        ) from None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(node[leaf], tuple) and isinstance(value, list):
        value = tuple(value)
    try:
        node[leaf] = value
    except TypeError as error:
        raise UsageError(f"config.{dotted}={text!r} has the wrong type ({error})") from None


def evaluation_config(**overrides) -> ml_collections.ConfigDict:
    """``config.evaluation``: the evaluation suite, every field of ``EvaluationSettings``."""
    from relbench.train.evaluation import EvaluationSettings

    fields = {f.name: f.default for f in dataclasses.fields(EvaluationSettings)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UsageError(f"evaluation has no setting '{unknown[0]}'")
    return ml_collections.ConfigDict({**fields, **overrides})


SMOKE_TRAIN = {
    "log_every_steps": 2,
    "checkpoint_every_steps": 4,
    "global_batch_size": 32,
    "eval_batch_size": 64,
}


def train_config(smoke: bool, smoke_epochs: float = 0.5, **settings) -> ml_collections.ConfigDict:
    """``config.train`` from ``settings``; ``smoke`` trains ``smoke_epochs`` in small batches,
    logging and checkpointing every few steps (for tests)."""
    if smoke:
        settings.update(SMOKE_TRAIN, num_epochs=smoke_epochs)
    return ml_collections.ConfigDict(settings)

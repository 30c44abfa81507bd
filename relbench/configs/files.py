"""Loading experiment config files and applying command-line overrides to them."""

from __future__ import annotations

import ast
import importlib.util
import pathlib

import ml_collections

from relbench.errors import UsageError


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

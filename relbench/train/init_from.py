"""Adaptation: start a run from another run's parameters, with layer types allowed to change.

``config.init_from`` (``InitFrom``) names where the parameters come from (``path``): a
finished run's workdir (the parameters of its newest checkpoint, i.e. before any
after-training step such as SWAG's averaging) or an orbax checkpoint (a step folder of
``checkpoints/``, or a PyTree checkpoint of a params tree or of a state with
``"params"``). The new model is initialised as usual; then every parameter array whose
path (``Dense_0/kernel``) appears in the checkpoint with the same shape and dtype takes
the checkpoint's value, bit for bit, unless a regex of ``exclude`` matches its path.
A module whose type extends a base type is named ``<Extension><Base>_<i>``
(``SpectralNormDense_0``, ``BatchEnsembleDense_0``): where the exact path is missing, its
parameters are looked up under ``<Base>_<i>``, so a deterministic backbone loads into
a spectral-normalized or rank-1 one. Everything else keeps its fresh initialisation
(e.g. a head of another type than the checkpoint's: the Plex recipe [1]); the log states what was
loaded, what was initialised, and what the checkpoint had that the model does not use.

An array found under its path with another shape is an error (one line: exclude it, or
match the model's widths). Parameters matched by a regex of ``freeze`` are not trained:
their updates are zero (``optax.multi_transform`` with ``optax.set_to_zero``), so a
linear probe is ``freeze=(".*",)`` less the head. The optimizer state starts fresh.

References:
  [1] Tran et al. Plex: Towards Reliability using Pretrained Large Model Extensions.
      2022. https://arxiv.org/abs/2207.07411
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from relbench.errors import UsageError
from relbench.train.checkpoints import load_final_params

_EXTENDED = re.compile(r"^[A-Z][A-Za-z0-9]*?([A-Z][a-z0-9]+)_(\d+)$")


@dataclasses.dataclass(frozen=True)
class InitFrom:
    """``config.init_from``: where parameters come from and what happens to them.

    Attributes:
      path: a finished run's workdir or an orbax checkpoint; empty: no init_from.
      exclude: regexes of parameter paths initialised fresh whatever the checkpoint has.
      freeze: regexes of parameter paths that are not trained.
    """

    path: str = ""
    exclude: Sequence[str] = ()
    freeze: Sequence[str] = ()


def init_from_config(**overrides) -> ml_collections.ConfigDict:
    """``config.init_from`` with every field of ``InitFrom``."""
    fields = {f.name: f.default for f in dataclasses.fields(InitFrom)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UsageError(
            f"config.init_from has no setting '{unknown[0]}'; valid: {', '.join(fields)}"
        )
    return ml_collections.ConfigDict({**fields, **overrides})


def continued_from(config: ml_collections.ConfigDict, path: str) -> ml_collections.ConfigDict:
    """``config.init_from`` for a run that continues from ``path``, keeping the config's
    ``exclude`` and ``freeze`` (active-learning rounds, continual tasks)."""
    kept = config.init_from.to_dict() if "init_from" in config else {}
    return init_from_config(**{**kept, "path": path})


def _path(key_path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key_path)


def flat_params(tree: Any) -> dict[str, Any]:
    """``{"Dense_0/kernel": array}`` of a params tree."""
    return {_path(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def read_params(path: str) -> dict[str, np.ndarray]:
    """The parameters at ``path`` (module docstring), flat, as numpy arrays."""
    source = pathlib.Path(path)
    if (source / "checkpoints").is_dir():
        return flat_params(load_final_params(source))
    item = source / "state" if (source / "state").is_dir() else source
    if not item.is_dir():
        raise UsageError(
            f"config.init_from.path '{path}' is neither a run's workdir nor an orbax "
            "checkpoint; pass the --workdir of a finished run or a checkpoint folder"
        )
    with ocp.PyTreeCheckpointer() as checkpointer:
        try:
            tree = checkpointer.metadata(item).item_metadata.tree
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(
                f"config.init_from.path '{path}' holds no orbax checkpoint ({error}); pass "
                "the --workdir of a finished run or a checkpoint folder"
            ) from None
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        restored = checkpointer.restore(item, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
    return flat_params(
        restored.get("params", restored) if isinstance(restored, Mapping) else restored
    )


def _base_path(path: str) -> str:
    """``SpectralNormDense_0/kernel`` -> ``Dense_0/kernel`` (each extended module name)."""
    parts = []
    for part in path.split("/"):
        match = _EXTENDED.match(part)
        parts.append(f"{match.group(1)}_{match.group(2)}" if match else part)
    return "/".join(parts)


def merge(
    params: Any, loaded: Mapping[str, np.ndarray], exclude: Sequence[str] = ()
) -> tuple[Any, dict[str, list[str]]]:
    """``params`` with every matching array replaced by ``loaded``'s, and what happened:
    ``{"loaded": [...], "initialised": [...], "unused": [...]}`` (paths)."""
    excluded = [re.compile(e) for e in exclude]
    used, report = set(), {"loaded": [], "initialised": [], "unused": []}

    def take(key_path, leaf):
        path = _path(key_path)
        if any(e.search(path) for e in excluded):
            report["initialised"].append(path)
            return leaf
        source = path if path in loaded else _base_path(path)
        if source not in loaded:
            report["initialised"].append(path)
            return leaf
        value = loaded[source]
        if value.shape != leaf.shape or value.dtype != leaf.dtype:
            raise UsageError(
                f"config.init_from: parameter {path} is {leaf.dtype}{list(leaf.shape)} in this "
                f"model but {value.dtype}{list(value.shape)} at {source} in the checkpoint; "
                f"add its module to config.init_from.exclude (e.g. '^{path.split('/')[0]}/') "
                "or give config.model the finished run's widths"
            )
        used.add(source)
        report["loaded"].append(path)
        return value

    merged = jax.tree_util.tree_map_with_path(take, params)
    report["unused"] = sorted(set(loaded) - used)
    return merged, report


def log_report(path: str, report: Mapping[str, list[str]]) -> None:
    logging.warning(
        "init_from %s: loaded %d parameter arrays (%s); initialised %d (%s); unused in the "
        "checkpoint %d (%s)",
        path,
        len(report["loaded"]),
        ", ".join(report["loaded"]) or "-",
        len(report["initialised"]),
        ", ".join(report["initialised"]) or "-",
        len(report["unused"]),
        ", ".join(report["unused"]) or "-",
    )


def frozen_optimizer(
    tx: optax.GradientTransformation, freeze: Sequence[str]
) -> optax.GradientTransformation:
    """``tx`` on the parameters no regex of ``freeze`` matches; zero updates elsewhere."""
    if not freeze:
        return tx
    patterns = [re.compile(f) for f in freeze]

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda p, _: "frozen" if any(f.search(_path(p)) for f in patterns) else "trained",
            params,
        )

    return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def start_from_checkpoint(init_from: InitFrom, state, optimizer, state_sharding):
    """The initial ``state`` with the checkpoint's parameters merged in (module docstring)
    and the optimizer state of the merged parameters."""
    params, report = merge(state.params, read_params(init_from.path), init_from.exclude)
    log_report(init_from.path, report)

    def restart(state, params):
        return state.replace(params=params, opt_state=optimizer.init(params))

    return jax.jit(restart, out_shardings=state_sharding)(state, params)

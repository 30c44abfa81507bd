"""A run's workdir: what a new ``train_and_evaluate`` may reuse, and what it must keep.

A workdir holds one run. Before anything is written, the config of the run already
there (``config.json``) is compared with the new one:

* the same training (every key but the evaluation settings and the bookkeeping below):
  the run resumes from its checkpoints and stages;
* other evaluation settings only (``config.evaluation``, ``config.train.eval_batch_size``):
  the run's training is reused and it is evaluated again; the previous
  ``config.json``, ``results.json`` and ``curves.json`` are kept as
  ``config.<i>.json``, ``results.<i>.json`` and ``curves.<i>.json`` (the lowest free
  ``i``);
* other bookkeeping only (how often to log and checkpoint, how many checkpoints to keep,
  reading threads: the same parameters, bit for bit): it resumes, the previous
  ``config.json`` kept as ``config.<i>.json``;
* anything else differs (a hyperparameter, the dataset, the model, the seed): a
  ``UsageError`` naming the first differing key, with the fix (a new ``--workdir``).
  Nothing is written.
"""

from __future__ import annotations

import json
import pathlib
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections

from relbench.errors import UsageError

#: Keys whose change re-evaluates a finished run (its training is reused).
EVALUATION_KEYS = ("evaluation", "train.eval_batch_size")
#: Keys that change neither the parameters nor the results.
BOOKKEEPING_KEYS = (
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "train.max_checkpoints_to_keep",
    "train.data_threads",
)
#: The files a re-evaluation would replace; kept under a versioned name.
VERSIONED_FILES = ("config.json", "results.json", "curves.json")

_MISSING = object()


def prepare(workdir: str | pathlib.Path) -> pathlib.Path:
    """The workdir, created; a UsageError if it cannot be written."""
    path = pathlib.Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_probe_{uuid.uuid4().hex}"  # processes may share the workdir
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UsageError(
            f"cannot write to workdir '{path}' ({error.strerror}); choose a writable --workdir"
        ) from None
    return path


def _flat(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _flat(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], tree


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def differences(previous: Mapping, new: Mapping) -> list[tuple[str, Any, Any]]:
    """``(dotted key, previous value, new value)`` for every differing leaf, in the new
    config's order (then keys only the previous one has); absent values are ``_MISSING``."""
    old, cur = dict(_flat(previous)), dict(_flat(new))
    keys = list(cur) + [k for k in old if k not in cur]
    return [
        (k, old.get(k, _MISSING), cur.get(k, _MISSING))
        for k in keys
        if old.get(k, _MISSING) != cur.get(k, _MISSING)
    ]


def _show(value: Any) -> str:
    return "absent" if value is _MISSING else json.dumps(value)


def _config_json(config: ml_collections.ConfigDict) -> str:
    return config.to_json_best_effort(indent=2) + "\n"


def check(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> bool:
    """Refuses a workdir holding a run of another config (``UsageError``, nothing
    written); True if the run there is finished and only its evaluation changed."""
    path = workdir / "config.json"
    if not path.exists():
        return False
    previous = json.loads(path.read_text())
    changed = differences(previous, json.loads(_config_json(config)))
    training = [d for d in changed if not _under(d[0], EVALUATION_KEYS + BOOKKEEPING_KEYS)]
    if training:
        key, before, after = training[0]
        more = f" (and {len(training) - 1} more)" if len(training) > 1 else ""
        raise UsageError(
            f"workdir '{workdir}' holds a run of another config: config.{key} is "
            f"{_show(before)} there, {_show(after)} here{more}; train this config in a new "
            "--workdir (the run there is kept)"
        )
    evaluation_changed = any(_under(d[0], EVALUATION_KEYS) for d in changed)
    return evaluation_changed and (workdir / "results.json").exists()


def _free_index(workdir: pathlib.Path) -> int:
    index = 1
    while any((workdir / f"{pathlib.Path(n).stem}.{index}.json").exists() for n in VERSIONED_FILES):
        index += 1
    return index


def write_config(
    workdir: pathlib.Path, config: ml_collections.ConfigDict, reevaluate: bool = False
) -> None:
    """``config.json``; a different one already there (a run resumed with changes) is
    kept as ``config.<i>.json``, and with ``reevaluate`` the previous ``results.json``
    and ``curves.json`` as ``results.<i>.json`` and ``curves.<i>.json``."""
    path, text = workdir / "config.json", _config_json(config)
    if path.exists() and path.read_text() != text:
        index = _free_index(workdir)
        for name in VERSIONED_FILES if reevaluate else ("config.json",):
            if (workdir / name).exists():
                (workdir / name).replace(workdir / f"{pathlib.Path(name).stem}.{index}.json")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic: the other processes of a run read it in check()

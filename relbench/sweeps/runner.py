"""``relbench sweep``: run every trial of a config's ``sweep()``, each in its own workdir.

    relbench sweep --config experiments/digits_mlp.py:mc_dropout --workdir runs/sweep \\
        --parallel 2

Trial ``i`` is ``relbench train --config FILE[:ARG] --workdir ROOT/trial_<i>
--config.KEY=VALUE ...`` (the overrides given on the command line, then its own from
``sweep()``, each written as a Python literal), run as its own single-process
subprocess with output in ``ROOT/trial_<i>/train.log``. A trial with ``results.json``
is finished and skipped; an unfinished one resumes from its checkpoints, so rerunning
the same command after a crash or a Ctrl-C finishes the sweep.
``ROOT/trial_<i>/trial.json`` records each trial's overrides; a rerun whose
``sweep()`` gives a trial other overrides stops before running anything, so results
are never mixed. Finally ``relbench report`` over the finished trials writes
``ROOT/report``.
"""

from __future__ import annotations

import copy
import json
import pathlib
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from relbench import configs
from relbench.errors import UsageError
from relbench.launch.processes import relbench_command, sigterm_as_exit, stop

_POLL_SECONDS = 0.2


def load_sweep(config_spec: str) -> list[dict[str, Any]]:
    """Calls ``sweep()`` in the config file of ``FILE[:ARG]``; checks what it returns."""
    path = config_spec.partition(":")[0]
    module = configs.load_module(path)
    if not callable(getattr(module, "sweep", None)):
        raise UsageError(f"{path} defines no sweep(); add one returning a list of override dicts")
    trials = module.sweep()
    if not isinstance(trials, list | tuple) or not trials:
        raise UsageError(f"sweep() in {path} must return a non-empty list of override dicts")
    for index, overrides in enumerate(trials):
        if not isinstance(overrides, Mapping) or not all(isinstance(k, str) for k in overrides):
            raise UsageError(
                f"sweep() in {path} returned {overrides!r} as trial {index}; each trial must "
                "be a dict such as {'optimizer.learning_rate': 0.1}"
            )
    return [dict(overrides) for overrides in trials]


def check_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, str], what: str):
    """Applies ``{key: text}`` to a copy of ``config`` as ``relbench train`` will; an
    unknown key or a wrong type is a UsageError naming ``what``."""
    trial = copy.deepcopy(config)
    for key, text in overrides.items():
        try:
            configs.apply_override(trial, key, text)
        except UsageError as error:
            raise UsageError(f"{what}: {error}; fix sweep()") from None
    return trial


def flag_value(value: Any) -> str:
    """A value as the text of ``--config.KEY=TEXT`` (read back as a Python literal)."""
    return repr(value)


def trial_dir(root: pathlib.Path, index: int, count: int) -> pathlib.Path:
    return root / f"trial_{index:0{max(3, len(str(count - 1)))}d}"


def trial_command(config_spec: str, overrides: Mapping[str, str], workdir: pathlib.Path):
    """The ``relbench train`` argv of one trial (always a single process)."""
    flags = [f"--config.{key}={text}" for key, text in overrides.items()]
    return relbench_command(
        "train", f"--config={config_spec}", f"--workdir={workdir}", "--distributed=off", *flags
    )


def _claim(workdir: pathlib.Path, index: int, overrides: Mapping[str, str]) -> None:
    """Writes ``trial.json``, or checks that an existing one holds the same trial."""
    record = {"index": index, "overrides": dict(overrides)}
    path = workdir / "trial.json"
    if path.exists():
        if json.loads(path.read_text()) != record:
            raise UsageError(
                f"{path} holds another trial than sweep() now gives for trial {index}; "
                "use a new --workdir for a changed sweep()"
            )
        return
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def run_trials(commands: Mapping[int, tuple[list[str], pathlib.Path]], parallel: int) -> dict:
    """Runs ``{index: (argv, workdir)}`` at most ``parallel`` at a time; ``{index: status}``."""
    waiting = list(commands)
    running: dict[int, subprocess.Popen] = {}
    logs = {}
    status: dict[int, int] = {}
    with sigterm_as_exit():
        try:
            while waiting or running:
                while waiting and len(running) < parallel:
                    index = waiting.pop(0)
                    argv, workdir = commands[index]
                    logs[index] = open(workdir / "train.log", "a")  # noqa: SIM115
                    running[index] = subprocess.Popen(
                        argv, stdout=logs[index], stderr=subprocess.STDOUT
                    )
                    print(f"trial {index}: started in {workdir}", flush=True)
                for index, process in list(running.items()):
                    if process.poll() is None:
                        continue
                    del running[index]
                    logs[index].close()
                    status[index] = process.returncode
                    workdir = commands[index][1]
                    outcome = (
                        "finished"
                        if process.returncode == 0
                        else (f"FAILED (status {process.returncode}; see {workdir / 'train.log'})")
                    )
                    print(f"trial {index}: {outcome}", flush=True)
                time.sleep(_POLL_SECONDS)
        finally:
            stop(list(running.values()))
            for log in logs.values():
                log.close()
    return status


def _report(root: pathlib.Path, workdirs: Sequence[pathlib.Path]) -> None:
    """``relbench report`` over the finished trials, into ``root/report``."""
    finished = [str(w) for w in workdirs if (w / "results.json").exists()]
    if not finished:
        print(f"(no report; trial results are in {root}/trial_*/)")
        return
    subprocess.run(relbench_command("report", *finished, f"--out={root / 'report'}"), check=False)


def run_sweep(
    config_spec: str,
    base_overrides: Sequence[tuple[str, str]],
    root: str | pathlib.Path,
    parallel: int = 1,
) -> int:
    """Runs the unfinished trials of ``sweep()``; returns 0 if every trial finished.

    Args:
      config_spec: ``FILE[:ARG]`` as given to ``--config``.
      base_overrides: ``(key, text)`` pairs given on the command line, for every trial.
      root: the sweep's directory; trial ``i`` runs in ``root/trial_<i>``.
      parallel: how many trials run at the same time.
    """
    if parallel < 1:
        raise UsageError(f"--parallel {parallel} must be at least 1")
    root = pathlib.Path(root)
    config = configs.load(config_spec)
    for key, text in base_overrides:
        configs.apply_override(config, key, text)
    trials = [
        {**dict(base_overrides), **{k: flag_value(v) for k, v in overrides.items()}}
        for overrides in load_sweep(config_spec)
    ]
    for index, overrides in enumerate(trials):
        check_overrides(config, overrides, f"sweep() trial {index}")
    workdirs = [trial_dir(root, i, len(trials)) for i in range(len(trials))]
    for index, (workdir, overrides) in enumerate(zip(workdirs, trials, strict=True)):
        _claim(workdir, index, overrides)
    todo = {
        i: (trial_command(config_spec, trials[i], workdirs[i]), workdirs[i])
        for i in range(len(trials))
        if not (workdirs[i] / "results.json").exists()
    }
    print(f"sweep: {len(trials)} trials, {len(trials) - len(todo)} already finished", flush=True)
    status = run_trials(todo, parallel)
    failed = sorted(i for i, code in status.items() if code != 0)
    if failed:
        print(f"sweep: trials {failed} failed; rerun the same command to retry them")
    if todo or not (root / "report").exists():  # nothing new: the report stands
        _report(root, workdirs)
    return 1 if failed else 0

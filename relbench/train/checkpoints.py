"""Checkpoints: the train state and the grain iterator state, saved together by orbax,
and the stages of a run after its last step.

The iterator state is a small JSON dict (the next batch index). Batches are a function
of the global step alone (``relbench.data.sources``), so the same state is valid for
every process and restores under any number of processes.

A *stage* is what a run computes once after training, under ``workdir/stages/<name>``:
``after_training`` (the state the method's after-training step returned) and
``posthoc`` (the fitted parameters of the post-hoc steps). Each is saved with the
settings it was computed under (``<name>.json``, written first), so a restarted run
reuses it only for the same settings and never refits it.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so
a process killed mid-save leaves the previous checkpoints intact, and a restarted run
resumes from the newest complete one.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from relbench.errors import UsageError


class Checkpoints:
    """Saves and restores ``(TrainState, data iterator)`` under ``workdir/checkpoints``."""

    def __init__(self, workdir: pathlib.Path, max_to_keep: int):
        self.directory = (workdir / "checkpoints").absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
            ),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, iterator) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(iterator.get_state())
            ),
            force=True,
        )
        self.manager.wait_until_finished()

    def restore(self, step: int, abstract_state, iterator):
        """Restores the state (onto ``abstract_state``'s shardings) and the iterator in place."""
        restored = self._restore(
            step,
            lambda items: iterator.set_state(items["data"]),
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
        )
        return restored["state"]

    def restore_state(self, step: int, abstract_state):
        """Restores only the state (to evaluate a finished run)."""
        return self._restore(step, None, state=ocp.args.StandardRestore(abstract_state))["state"]

    def _restore(self, step: int, finish, **items):
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
            if finish is not None:
                finish(restored)
        except Exception as error:
            raise UsageError(
                f"checkpoint {self.directory / str(step)} cannot be restored "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); move that "
                "step's folder aside to resume from an earlier one, or use a new --workdir"
            ) from None
        return restored

    def close(self) -> None:
        self.manager.close()


class Stages:
    """What a run computes once after training, saved under ``workdir/stages``."""

    def __init__(self, workdir: pathlib.Path):
        self.directory = (workdir / "stages").absolute()
        self.checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())

    def _settings(self, name: str) -> pathlib.Path:
        return self.directory / f"{name}.json"

    def restore(self, name: str, abstract: Any, settings: Mapping[str, Any]) -> Any | None:
        """The saved stage onto ``abstract``'s shardings; None if it was never saved.

        A stage saved under other settings is a UsageError: it is kept, never refitted.
        """
        path = self.directory / name
        if not path.is_dir():
            return None
        saved = json.loads(self._settings(name).read_text())
        if saved != json.loads(json.dumps(dict(settings))):
            raise UsageError(
                f"{path} was computed with {saved}, this run asks for {dict(settings)}; "
                "use a new --workdir, or move that folder aside to recompute it"
            )
        try:
            return self.checkpointer.restore(path, args=ocp.args.StandardRestore(abstract))
        except Exception as error:
            raise UsageError(
                f"stage {path} cannot be restored ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200]}); move it aside to recompute it"
            ) from None

    def save(self, name: str, tree: Any, settings: Mapping[str, Any]) -> None:
        """Saves a stage (every process takes part; process 0 writes the settings)."""
        if jax.process_index() == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            for partial in self.directory.glob(f"{name}.orbax-checkpoint-tmp*"):
                shutil.rmtree(partial)  # a save that was killed before it completed
            settings_path = self._settings(name)
            tmp = settings_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(dict(settings), indent=2, sort_keys=True) + "\n")
            tmp.replace(settings_path)
        self.checkpointer.save(self.directory / name, args=ocp.args.StandardSave(tree))

    def close(self) -> None:
        self.checkpointer.close()


def load_final_params(workdir: str | pathlib.Path):
    """The parameters of the newest checkpoint in ``workdir``, as numpy arrays.

    Reads on the host only, without the shardings it was saved with, so a checkpoint
    written by any number of processes and devices loads in any process. Orbax renames
    a step's folder to its number only once the step is complete.
    """
    directory = (pathlib.Path(workdir) / "checkpoints").absolute()
    steps = [int(p.name) for p in directory.glob("*") if p.name.isdigit()]
    if not steps:
        raise UsageError(f"no checkpoint in {directory}; train first")
    path = directory / str(max(steps)) / "state"
    with ocp.PyTreeCheckpointer() as checkpointer:
        tree = checkpointer.metadata(path).item_metadata.tree
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        state = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
    return state["params"]

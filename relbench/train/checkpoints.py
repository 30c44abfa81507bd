"""Checkpoints: the train state and the grain iterator state, saved together by orbax.

The iterator state is a small JSON dict (the next batch index). Batches are a function
of the global step alone (``relbench.data.sources``), so the same state is valid for
every process and restores under any number of processes.

Orbax writes each step into a temporary folder and renames it when complete, so a
process killed mid-save leaves the previous checkpoints intact, and a restarted run
resumes from the newest complete one.
"""

from __future__ import annotations

import pathlib

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
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
                ),
            )
            iterator.set_state(restored["data"])
        except Exception as error:
            raise UsageError(
                f"checkpoint {self.directory / str(step)} cannot be restored "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); move that "
                "step's folder aside to resume from an earlier one, or use a new --workdir"
            ) from None
        return restored["state"]

    def close(self) -> None:
        self.manager.close()


def load_final_params(workdir: str | pathlib.Path):
    """The parameters of the newest checkpoint in ``workdir``, as numpy arrays."""
    directory = (pathlib.Path(workdir) / "checkpoints").absolute()
    with ocp.CheckpointManager(
        directory, item_handlers={"state": ocp.StandardCheckpointHandler()}
    ) as manager:
        step = manager.latest_step()
        if step is None:
            raise UsageError(f"no checkpoint in {directory}; train first")
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return jax.tree.map(np.asarray, restored["state"]["params"])

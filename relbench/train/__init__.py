"""The one train/eval loop, its state, checkpoints, outputs and CLI."""

from __future__ import annotations


def __getattr__(name: str):
    # Lazy, so that ``relbench.train.state`` can be imported by methods without
    # importing the loop (which imports the methods).
    if name in ("train_and_evaluate", "build"):
        from relbench.train import loop

        return getattr(loop, name)
    raise AttributeError(name)


__all__ = ["build", "train_and_evaluate"]

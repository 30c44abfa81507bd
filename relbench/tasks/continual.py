"""Continual learning on a class-split sequence: average accuracy and forgetting.

``continual_learn(config, workdir, tasks)`` trains the config's method on the tasks
one after another (``split_tasks`` of ``relbench.data.subset``: task ``t`` trains on the
examples of the classes ``tasks[t]`` only, split MNIST's construction on digits), each
task starting from the previous task's final parameters (``config.init_from``), each a
``train_and_evaluate`` in ``DIR/tasks/task_<t>`` that evaluates every task's classes of
the test set (``task_<j>``). With ``a[t, j]`` the accuracy on task ``j`` after training
on task ``t`` and ``T`` tasks [1]:

* average accuracy ``A = 1/T sum_j a[T-1, j]``;
* forgetting ``F = 1/(T-1) sum_{j < T-1} max_{t < T-1} a[t, j] - a[T-1, j]``, how much of
  its best accuracy each earlier task has lost by the end (0 for one task).

``DIR/continual.json`` holds the matrix and both numbers. A finished task is reused, so
a killed sequence resumes at the task it was in (and inside it from its checkpoint).
The output layer keeps every class (class-incremental), so plain fine-tuning forgets.

References:
  [1] Chaudhry, Dokania, Ajanthan, Torr. Riemannian Walk for Incremental Learning:
      Understanding Forgetting and Intransigence. ECCV 2018.
      https://arxiv.org/abs/1801.10112
"""

from __future__ import annotations

import copy
import json
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from relbench.train import loop
from relbench.train import workdir as workdir_lib
from relbench.train.init_from import continued_from
from relbench.train.writers import _write_atomically


def average_accuracy_and_forgetting(accuracy: np.ndarray) -> dict[str, float]:
    """``A`` and ``F`` of the module docstring from the ``[T, T]`` matrix ``a[t, j]``."""
    accuracy = np.asarray(accuracy, np.float64)
    last = accuracy[-1]
    tasks = len(last)
    forgetting = float(np.mean(accuracy[:-1, :-1].max(axis=0) - last[:-1])) if tasks > 1 else 0.0
    return {"average_accuracy": float(last.mean()), "forgetting": forgetting}


def task_config(config, tasks, task: int, previous: str | None) -> ml_collections.ConfigDict:
    """The train config of task ``task``: its split of the dataset, from ``previous``."""
    out = copy.deepcopy(config)
    with out.unlocked():
        out.dataset = ml_collections.ConfigDict(
            {
                "name": "split_tasks",
                "dataset": config.dataset.to_dict(),
                "tasks": tuple(tuple(int(c) for c in t) for t in tasks),
                "task": task,
            }
        )
        if previous is not None:
            out.init_from = continued_from(config, previous)
    return out


def continual_learn(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    tasks: Sequence[Sequence[int]],
) -> dict:
    """Trains on ``tasks`` in order (module docstring); returns ``continual.json``."""
    workdir = workdir_lib.prepare(workdir)
    rows, previous = [], None
    for t in range(len(tasks)):
        task_dir = workdir / "tasks" / f"task_{t:03d}"
        results_path = task_dir / "results.json"
        if results_path.exists():
            results = json.loads(results_path.read_text())
        else:
            results = loop.train_and_evaluate(task_config(config, tasks, t, previous), task_dir)
        rows.append([results[f"task_{j}"]["accuracy"] for j in range(len(tasks))])
        previous = str(task_dir)
    summary = {
        "tasks": [list(t) for t in tasks],
        "accuracy": rows,
        **average_accuracy_and_forgetting(np.asarray(rows)),
    }
    _write_atomically(workdir / "continual.json", json.dumps(summary, indent=2))
    return summary

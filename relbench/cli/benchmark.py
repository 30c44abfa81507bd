"""The small benchmark behind ``make run``: every method on the embedded datasets.

Every registered method (``relbench.methods.METHODS``, so a new method joins by being
registered) is trained and evaluated with each embedded experiment config — digits
with an MLP (3 seeds, so the leaderboard shows mean ± std and marks differences smaller
than the spread) and with a batch-norm CNN, each with its shift suite (``digits_c``)
and OOD sets, and two moons with its near and far OOD rings — into
``WORKDIR/<experiment>/<method>`` (seed 0) and ``.../<method>_seed<s>``, and the report
of all runs is written to ``WORKDIR/report``. A run that fails is reported and skipped;
the others still make the report. Runs resume from their checkpoints, so a second call
only re-evaluates.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import time
import traceback
from collections.abc import Sequence

import ml_collections

from relbench import methods as methods_lib
from relbench.report import write_report
from relbench.train.loop import train_and_evaluate

EXPERIMENTS = (
    "experiments/digits_mlp.py",
    "experiments/digits_cnn.py",
    "experiments/two_moons_mlp.py",
)
#: Seeds per experiment (the others: seed 0): within the 6-minute budget of `make run`.
SEEDS = {"experiments/digits_mlp.py": (0, 1, 2)}


def load_config(path: str | pathlib.Path, arg: str) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of an experiment config file."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(f"relbench_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def run_benchmark(
    workdir: str | pathlib.Path,
    experiments: Sequence[str] = EXPERIMENTS,
    methods: Sequence[str] | None = None,
    config_arg_suffix: str = "",
    seeds: dict[str, Sequence[int]] | None = None,
) -> list[str]:
    """Trains every method on every experiment, then writes the report.

    Args:
      workdir: where the runs and ``report/`` go.
      experiments: config files.
      methods: method names; every registered method by default.
      config_arg_suffix: appended to each config argument (``",smoke"`` in tests).
      seeds: config file -> seeds (``SEEDS`` by default; others: seed 0).

    Returns:
      The runs that failed, as ``"experiment/method: error"`` lines.
    """
    workdir = pathlib.Path(workdir)
    methods = list(methods or methods_lib.METHODS.names())
    seeds = SEEDS if seeds is None else seeds
    done, failed = [], []
    runs = [
        (config_file, method, seed)
        for config_file in experiments
        for method in methods
        for seed in seeds.get(config_file, (0,))
    ]
    for config_file, method, seed in runs:
        name = method if seed == 0 else f"{method}_seed{seed}"
        run_dir = workdir / pathlib.Path(config_file).stem / name
        start = time.perf_counter()
        print(f"[benchmark] {run_dir} ...", file=sys.stderr, flush=True)
        try:
            config = load_config(config_file, method + config_arg_suffix)
            config.seed = seed
            train_and_evaluate(config, run_dir)
        except Exception as error:  # one broken method must not hide the others
            traceback.print_exc()
            failed.append(f"{run_dir}: {type(error).__name__}: {error}")
            continue
        done.append(run_dir)
        print(
            f"[benchmark] {run_dir} done in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    if done:
        written = write_report(done, workdir / "report")
        print(f"report: {written[0]} and {written[1]} ({len(written) - 2} figures)")
    for line in failed:
        print(f"[benchmark] FAILED {line}", file=sys.stderr)
    return failed

"""The small benchmark behind ``make run``: every method on the embedded datasets.

Every registered method (``relbench.methods.METHODS``, so a new method joins by being
registered) is trained and evaluated with each experiment config of ``EXPERIMENTS`` —
digits with an MLP (3 seeds, so the leaderboard shows mean ± std and marks differences
smaller than the spread), with its shift suite (``digits_c``) and near and far OOD sets,
and two moons with its near and far OOD rings — into ``WORKDIR/<experiment>/<method>``
(seed 0) and ``.../<method>_seed<s>``, and the report of all runs is written to
``WORKDIR/report``. ``--experiments`` picks other config files, e.g. adds
``experiments/digits_cnn.py`` (a batch-norm CNN on digits: about 2.5 more minutes on 2
cores). Each run's own output goes to its ``train.log``. A run that
fails is reported and skipped; the others still make the report. Runs resume from their
checkpoints, so a second call only re-evaluates."""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.util
import multiprocessing
import os
import pathlib
import sys
import time
import traceback
from collections.abc import Sequence

import ml_collections

from relbench import methods as methods_lib
from relbench.errors import UsageError
from relbench.report import write_report
from relbench.train.loop import train_and_evaluate

#: The experiments of ``make run``: within its 6 minutes on 2 cores from a fresh clone.
EXPERIMENTS = ("experiments/digits_mlp.py", "experiments/two_moons_mlp.py")
#: Seeds per experiment (the others: seed 0).
SEEDS = {"experiments/digits_mlp.py": (0, 1, 2)}


def load_config(path: str | pathlib.Path, arg: str) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of an experiment config file."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(f"relbench_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def use_compilation_cache(directory: str | pathlib.Path) -> None:
    """Keeps every compiled XLA program in ``directory`` (JAX's persistent cache), unless
    the user has set a cache of their own: a later seed of the same method, a method
    sharing an evaluation program, or a second call of the benchmark reads the program
    back instead of compiling it again. Set before this process compiles anything."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_one(config_file: str, config_arg: str, seed: int, run_dir: str) -> str | None:
    """One run of the benchmark (``get_config(config_arg)`` of ``config_file``, seeded),
    with progress lines; returns its error as one line, or None: one broken method must
    not hide the others."""
    start, cpu_start = time.perf_counter(), time.process_time()
    print(f"[benchmark] {run_dir} ...", file=sys.stderr, flush=True)
    try:
        config = load_config(config_file, config_arg)
        config.seed = seed
        pathlib.Path(run_dir).mkdir(parents=True, exist_ok=True)
        with (  # the run's progress bar and tables: runs at the same time would interleave
            open(pathlib.Path(run_dir) / "train.log", "a") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            train_and_evaluate(config, run_dir)
    except Exception as error:
        traceback.print_exc()
        return f"{type(error).__name__}: {error}"
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        f"[benchmark] {run_dir} done in {elapsed:.0f} s ({cpu:.0f} s CPU)",
        file=sys.stderr,
        flush=True,
    )
    return None


def default_workers() -> int:
    """Runs at the same time: one per CPU core (the embedded runs use about one each)."""
    return max(1, min(os.cpu_count() or 1, 8))


def run_benchmark(
    workdir: str | pathlib.Path,
    experiments: Sequence[str] = EXPERIMENTS,
    methods: Sequence[str] | None = None,
    config_arg_suffix: str = "",
    seeds: dict[str, Sequence[int]] | None = None,
    workers: int = 1,
) -> list[str]:
    """Trains every method on every experiment, then writes the report.

    Runs go seed by seed (every seed-0 run first, so a later seed finds its programs in
    the compilation cache ``WORKDIR/compilation_cache``), ``workers`` at a time, each
    in one of that many spawned processes (each with its own JAX; this one only writes
    the report). A run's results do not depend on the process that runs it.

    Args:
      workdir: where the runs and ``report/`` go.
      experiments: config files.
      methods: method names; every registered method by default.
      config_arg_suffix: appended to each config argument (``",smoke"`` in tests).
      seeds: config file -> seeds (``SEEDS`` by default; others: seed 0).
      workers: runs at the same time (processes).

    Returns:
      The runs that failed, as ``"experiment/method: error"`` lines.
    """
    if workers < 1:
        raise UsageError(f"--workers {workers} must be at least 1")
    missing = [f for f in experiments if not pathlib.Path(f).is_file()]
    if missing:
        raise UsageError(
            f"no experiment config {missing[0]} (relative to {pathlib.Path.cwd()}); run "
            "from the repository's root or give --experiments FILE.py ..."
        )
    workdir = pathlib.Path(workdir)
    methods = list(methods or methods_lib.METHODS.names())
    seeds = SEEDS if seeds is None else seeds
    runs = sorted(
        (
            (seed, config_file, method)
            for config_file in experiments
            for method in methods
            for seed in seeds.get(config_file, (0,))
        ),
        key=lambda run: run[0],  # stable: within a seed, the experiments' and methods' order
    )
    tasks = {}
    for seed, config_file, method in runs:
        name = method if seed == 0 else f"{method}_seed{seed}"
        run_dir = workdir / pathlib.Path(config_file).stem / name
        tasks[run_dir] = (config_file, method + config_arg_suffix, seed, str(run_dir))
    context = multiprocessing.get_context("spawn")  # a forked JAX is not safe
    with concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=use_compilation_cache,
        initargs=(workdir / "compilation_cache",),
    ) as pool:
        futures = {run_dir: pool.submit(run_one, *task) for run_dir, task in tasks.items()}
        finished = {run_dir: future.result() for run_dir, future in futures.items()}
    done = [run_dir for run_dir, error in finished.items() if error is None]
    failed = [f"{run_dir}: {error}" for run_dir, error in finished.items() if error is not None]
    if done:
        written = write_report(done, workdir / "report")
        print(f"report: {written[0]} and {written[1]} ({len(written) - 2} figures)")
    for line in failed:
        print(f"[benchmark] FAILED {line}", file=sys.stderr)
    return failed

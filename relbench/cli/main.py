"""The ``relbench`` command line.

    relbench train --config FILE.py[:ARG] [--config.a.b=VALUE ...] --workdir DIR
    relbench eval [--ensemble] RUN_DIR [RUN_DIR ...] [--workdir OUT]   (train.ensemble_eval)
    relbench report RUN_DIR [RUN_DIR ...] --out DIR
    relbench benchmark --workdir DIR [--experiments FILE.py ...] [--workers N]
    relbench launch --processes N [--devices-per-process D] -- TRAIN_OPTIONS
    relbench sweep --config FILE.py[:ARG] [--config.a.b=VALUE ...] --workdir ROOT
    relbench active-learn --config FILE.py[:ARG] [--config.a.b=VALUE ...] --workdir DIR
    relbench evaluate-predictions FILE.npz --out DIR   (any model's outputs: train.predictions)

``launch`` runs one multi-process ``train`` on this machine (relbench/launch/local.py);
``sweep`` runs every trial of the config's ``sweep()`` (relbench/sweeps/runner.py);
``active-learn`` runs the pool-based loop of ``config.active_learning``
(relbench/tasks/active_learning.py).

Overrides use ml_collections' syntax (``--config.optimizer.learning_rate=0.01``); a
value is read as a Python literal, else as a string. A mistake the user can fix
(unknown key, missing dataset, unwritable workdir...) prints one
``relbench: error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

# Before JAX loads: XLA's CPU linear algebra calls scipy's OpenBLAS, whose own thread pool
# fights XLA's device threads (with 4 CPU devices on 2 cores a least-squares fit of a
# post-hoc detector took 160 s instead of 1.4 s). The user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from relbench.errors import UsageError


def split_config_args(args: list[str]) -> tuple[str, list[tuple[str, str]], list[str]]:
    """``--config SPEC`` and ``--config.key=value`` -> (spec, [(key, text)], other args)."""
    spec, overrides, rest = None, [], []
    items = iter(args)
    for item in items:
        if item == "--config":
            spec = next(items, None)
        elif item.startswith("--config="):
            spec = item.split("=", 1)[1]
        elif item.startswith("--config."):
            key, sep, value = item[len("--config.") :].partition("=")
            if not sep:
                value = next(items, "")
            overrides.append((key, value))
        else:
            rest.append(item)
    if not spec:
        raise UsageError("missing --config FILE.py[:ARG]; e.g. --config experiments/digits_mlp.py")
    return spec, overrides, rest


def config_from_args(args: list[str]):
    """``--config SPEC`` and ``--config.key=value`` overrides -> (locked config, rest)."""
    from relbench import configs

    spec, overrides, rest = split_config_args(args)
    config = configs.load(spec)
    for key, value in overrides:
        configs.apply_override(config, key, value)
    return config, rest


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage dump
        raise UsageError(f"{self.prog}: {message}")


def _quiet_logs() -> None:
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO


def _train(args: list[str]) -> None:
    config, rest = config_from_args(args)
    parser = _Parser(prog="relbench train")
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--distributed",
        choices=("auto", "on", "off"),
        default="auto",
        help="join a multi-process run: auto = when the options below are given or JAX "
        "detects a cluster (Cloud TPU, SLURM, GKE)",
    )
    parser.add_argument("--coordinator_address", "--coordinator-address", help="HOST:PORT")
    parser.add_argument("--num_processes", "--num-processes", type=int)
    parser.add_argument("--process_id", "--process-id", type=int)
    options = parser.parse_args(rest)

    from relbench.launch import distributed

    joined = distributed.initialize(
        options.distributed, options.coordinator_address, options.num_processes, options.process_id
    )
    import jax

    from relbench.train.evaluation import headline_results
    from relbench.train.loop import train_and_evaluate
    from relbench.train.writers import results_table

    _quiet_logs()
    results = train_and_evaluate(config, options.workdir)
    if joined:
        jax.distributed.shutdown()  # a barrier: no process exits while others still work
    if jax.process_index() == 0:
        print(results_table(headline_results(results)))
        print(f"results written to {options.workdir}/results.json (every metric and set)")


def _report(args: list[str]) -> None:
    parser = _Parser(prog="relbench report")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", required=True)
    options = parser.parse_args(args)
    from relbench.report import write_report

    written = write_report(options.runs, options.out)
    print(f"report written to {written[0]} and {written[1]} ({len(written) - 2} figures)")


def _eval(args: list[str]) -> None:
    parser = _Parser(prog="relbench eval")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--ensemble", action="store_true", help="evaluate the runs as one")
    parser.add_argument("--workdir", help="write results.json here")
    options = parser.parse_args(args)
    if len(options.runs) > 1 and not options.ensemble:
        raise UsageError("eval got several RUN_DIRs; pass --ensemble to evaluate them as one")
    workdir = None if options.workdir is None else pathlib.Path(options.workdir)
    if workdir is not None and workdir.resolve() in {
        pathlib.Path(d).resolve() for d in options.runs
    }:
        raise UsageError("eval --workdir is one of the RUN_DIRs; choose a new directory")
    from relbench.train.ensemble_eval import evaluate_runs
    from relbench.train.evaluation import headline_results
    from relbench.train.writers import RunWriter, results_table

    _quiet_logs()
    results = evaluate_runs(options.runs)
    print(results_table(headline_results(results)))
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        writer = RunWriter(workdir, enabled=True)
        writer.write_results(results)
        writer.close()
        print(f"results written to {workdir}/results.json")


def _evaluate_predictions(args: list[str]) -> None:
    parser = _Parser(prog="relbench evaluate-predictions")
    parser.add_argument("file", metavar="FILE.npz")
    parser.add_argument("--out", required=True, help="write results.json and curves.json here")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=512)
    parser.add_argument("--ood-reference", "--ood_reference", default="test")
    parser.add_argument("--dataset", default="predictions", help="the report's dataset name")
    parser.add_argument("--model", default="external", help="the report's model name")
    parser.add_argument("--method", help="the report's method name (default: FILE's stem)")
    options = parser.parse_args(args)
    from relbench.train.evaluation import headline_results
    from relbench.train.predictions import write_evaluation
    from relbench.train.writers import results_table

    names = {"dataset": options.dataset, "model": options.model}
    if options.method:
        names["method"] = options.method
    results = write_evaluation(
        options.file, options.out, options.batch_size, options.ood_reference, names
    )
    print(results_table(headline_results(results)))
    print(f"results written to {options.out}/results.json")


def _benchmark(args: list[str]) -> None:
    parser = _Parser(prog="relbench benchmark")
    parser.add_argument("--workdir", required=True)
    from relbench.cli.benchmark import EXPERIMENTS, default_workers, run_benchmark

    parser.add_argument(
        "--experiments",
        nargs="+",
        default=EXPERIMENTS,
        metavar="FILE.py",
        help=f"experiment config files (default: {' '.join(EXPERIMENTS)})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="runs at the same time, each in its own process (default: one per CPU core)",
    )
    options = parser.parse_args(args)
    _quiet_logs()
    if run_benchmark(options.workdir, options.experiments, workers=options.workers):
        sys.exit(1)


def _launch(args: list[str]) -> None:
    if "--" not in args or args.index("--") == len(args) - 1:
        raise UsageError(
            "launch takes the train options after '--': relbench launch --processes N -- "
            "--config FILE.py[:ARG] --workdir DIR"
        )
    split = args.index("--")
    train_args = args[split + 1 :]
    if train_args[0] == "train":
        train_args = train_args[1:]
    parser = _Parser(prog="relbench launch")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--devices-per-process", "--devices_per_process", type=int)
    parser.add_argument("--port", type=int, help="the coordinator's port (default: a free one)")
    options = parser.parse_args(args[:split])

    from relbench.launch import local as launch

    sys.exit(
        launch.launch(train_args, options.processes, options.devices_per_process, options.port)
    )


def _sweep(args: list[str]) -> None:
    spec, overrides, rest = split_config_args(args)
    parser = _Parser(prog="relbench sweep")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--parallel", type=int, default=1, help="trials run at the same time")
    options = parser.parse_args(rest)

    from relbench.sweeps import runner

    sys.exit(runner.run_sweep(spec, overrides, options.workdir, options.parallel))


def _active_learn(args: list[str]) -> None:
    config, rest = config_from_args(args)
    parser = _Parser(prog="relbench active-learn")
    parser.add_argument("--workdir", required=True)
    options = parser.parse_args(rest)
    from relbench.tasks.active_learning import active_learn

    _quiet_logs()
    curve = active_learn(config, options.workdir)
    for size, accuracy in zip(curve["num_labels"], curve["accuracy"], strict=True):
        print(f"{size:6d} labels: accuracy {accuracy:.4f}")
    print(f"learning curve written to {options.workdir}/learning_curve.json")


COMMANDS = {
    "train": _train,
    "eval": _eval,
    "report": _report,
    "benchmark": _benchmark,
    "launch": _launch,
    "sweep": _sweep,
    "active-learn": _active_learn,
    "evaluate-predictions": _evaluate_predictions,
}


def _fail(message: str) -> None:
    print(f"relbench: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


HELP = ("-h", "--help")


def usage(command: str | None = None) -> str:
    """The usage lines of this module's docstring: every command's, or ``command``'s."""
    lines = [line.strip() for line in (__doc__ or "").splitlines()]
    usages = [line for line in lines if line.startswith("relbench ")]
    if command is not None:
        usages = [u for u in usages if u.split()[1] == command] or [f"relbench {command} ..."]
    return "usage:\n" + "\n".join(f"  {u}" for u in usages)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) >= 2 and argv[1] in HELP:
        print(usage())
        print("Each command takes --help; details: README.md.")
        return
    own = argv[2:] if len(argv) < 3 or "--" not in argv else argv[2 : argv.index("--")]
    if len(argv) >= 2 and argv[1] in COMMANDS and any(a in HELP for a in own):
        print(usage(argv[1]))
        return
    if len(argv) < 2 or argv[1] not in COMMANDS:
        _fail(f"usage: relbench {{{','.join(COMMANDS)}}} [options]")
    try:
        COMMANDS[argv[1]](argv[2:])
    except UsageError as error:
        _fail(str(error))

"""The ``relbench`` command line.

    relbench train --config FILE.py[:ARG] [--config.a.b=VALUE ...] --workdir DIR
    relbench report RUN_DIR [RUN_DIR ...] --out DIR
    relbench benchmark --workdir DIR     (every method on the embedded sets, then a report)

Overrides use ml_collections' syntax (``--config.optimizer.learning_rate=0.01``); a
value is read as a Python literal, else as a string. A mistake the user can fix
(unknown key, missing dataset, unwritable workdir...) prints one
``relbench: error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from relbench.errors import UsageError


def config_from_args(args: list[str]):
    """``--config SPEC`` and ``--config.key=value`` overrides -> (locked config, rest)."""
    from relbench.train import configs

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
    options = parser.parse_args(rest)

    from relbench.train.evaluation import headline_results
    from relbench.train.loop import train_and_evaluate
    from relbench.train.writers import results_table

    _quiet_logs()
    results = train_and_evaluate(config, options.workdir)
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


def _benchmark(args: list[str]) -> None:
    parser = _Parser(prog="relbench benchmark")
    parser.add_argument("--workdir", required=True)
    options = parser.parse_args(args)
    from relbench.train.benchmark import run_benchmark

    _quiet_logs()
    if run_benchmark(options.workdir):
        sys.exit(1)


COMMANDS = {"train": _train, "report": _report, "benchmark": _benchmark}


def _fail(message: str) -> None:
    print(f"relbench: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        _fail(f"usage: relbench {{{','.join(COMMANDS)}}} [options]")
    try:
        COMMANDS[argv[1]](argv[2:])
    except UsageError as error:
        _fail(str(error))

"""``relbench`` command line.

    relbench train --config FILE[:ARG] --workdir DIR
    relbench report RUN_DIR [RUN_DIR ...] --out DIR
    relbench benchmark --workdir DIR     (every method on the embedded sets, then a report)

Config overrides use ml_collections syntax: ``--config.optimizer.learning_rate=0.01``.
A mistake the user can fix (unknown key, missing dataset, unwritable workdir...) prints
one ``relbench: error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from relbench.errors import UsageError

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally FILE:ARG.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_OUT = flags.DEFINE_string("out", None, "report: directory for the leaderboard and figures.")


def _train(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise UsageError("train needs --config FILE[:ARG] and --workdir DIR")
    from relbench.train.evaluation import headline_results
    from relbench.train.loop import train_and_evaluate
    from relbench.train.writers import results_table

    results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    print(results_table(headline_results(results)))
    print(f"results written to {_WORKDIR.value}/results.json (every metric and set)")


def _report(argv: list[str]) -> None:
    if _OUT.value is None or len(argv) < 2:
        raise UsageError("report needs RUN_DIR [RUN_DIR ...] and --out DIR")
    from relbench.report import write_report

    written = write_report(argv[1:], _OUT.value)
    print(f"report written to {written[0]} and {written[1]} ({len(written) - 2} figures)")


def _benchmark(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    if _WORKDIR.value is None:
        raise UsageError("benchmark needs --workdir DIR")
    from relbench.train.benchmark import run_benchmark

    if run_benchmark(_WORKDIR.value):
        sys.exit(1)


COMMANDS = {"train": _train, "report": _report, "benchmark": _benchmark}


def _guarded(command):
    def run(argv):
        try:
            command(argv)
        except UsageError as error:
            print(f"relbench: error: {error}", file=sys.stderr)
            sys.exit(2)

    return run


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(f"usage: relbench {{{','.join(COMMANDS)}}} [flags]", file=sys.stderr)
        sys.exit(2)
    command = argv.pop(1)
    try:
        app.run(_guarded(COMMANDS[command]), argv=argv)
    except UsageError as error:  # raised while the config file is loaded
        print(f"relbench: error: {error}", file=sys.stderr)
        sys.exit(2)

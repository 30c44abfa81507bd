"""``relbench`` command line: ``relbench train --config FILE[:ARG] --workdir DIR``, and
``relbench eval [--ensemble] RUN_DIR... [--workdir OUT]`` (``train.ensemble_eval``).

Config overrides use ml_collections syntax: ``--config.optimizer.learning_rate=0.01``.
A mistake the user can fix (unknown key, missing dataset, unwritable workdir...) prints
one ``relbench: error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from relbench.errors import UsageError

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally FILE:ARG.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")


def _train(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise UsageError("train needs --config FILE[:ARG] and --workdir DIR")
    from relbench.train.loop import train_and_evaluate
    from relbench.train.writers import results_table

    results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    print(results_table(results))
    print(f"results written to {_WORKDIR.value}/results.json")


_ENSEMBLE = flags.DEFINE_bool(
    "ensemble", False, "eval: combine the RUN_DIRs' members into one ensemble."
)


def _eval(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    run_dirs = argv[1:]
    if not run_dirs:
        raise UsageError("eval needs RUN_DIR arguments: relbench eval [--ensemble] RUN_DIR...")
    if len(run_dirs) > 1 and not _ENSEMBLE.value:
        raise UsageError("eval got several RUN_DIRs; pass --ensemble to evaluate them as one")
    from relbench.train.ensemble_eval import evaluate_runs
    from relbench.train.writers import RunWriter, results_table

    workdir = None if _WORKDIR.value is None else pathlib.Path(_WORKDIR.value)
    if workdir is not None and workdir.resolve() in {pathlib.Path(d).resolve() for d in run_dirs}:
        raise UsageError("eval --workdir is one of the RUN_DIRs; choose a new directory")
    results = evaluate_runs(run_dirs)
    print(results_table(results))
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        writer = RunWriter(workdir, enabled=True)
        writer.write_results(results)
        writer.close()
        print(f"results written to {workdir}/results.json")


COMMANDS = {"train": _train, "eval": _eval}


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

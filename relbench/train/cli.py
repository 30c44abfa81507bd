"""``relbench`` command line: ``relbench train --config FILE[:ARG] --workdir DIR``.

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


COMMANDS = {"train": _train}


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

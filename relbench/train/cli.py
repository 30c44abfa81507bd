"""``relbench`` command line: ``relbench train --config FILE[:ARG] --workdir DIR``.

Also ``relbench launch`` (N local processes of one multi-process run) and ``relbench
sweep`` (every trial of a config's ``sweep()``); see relbench/train/launch.py and
relbench/sweeps/runner.py.

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
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "on", "off"],
    "Join a multi-process run: auto = when the flags below are given or JAX detects a "
    "cluster (Cloud TPU, SLURM, GKE).",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0 in a multi-process run."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in the run.")
_PROCESSES = flags.DEFINE_integer("processes", 2, "launch: the number of local processes.")
_DEVICES_PER_PROCESS = flags.DEFINE_integer(
    "devices_per_process", None, "launch: CPU devices per process (default: the platform's own)."
)
_PORT = flags.DEFINE_integer("port", None, "launch: the coordinator's port (default: a free one).")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "sweep: trials run at the same time.")


def _train(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise UsageError("train needs --config FILE[:ARG] and --workdir DIR")
    from relbench.train import distributed

    joined = distributed.initialize(
        _DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
    )
    import jax

    from relbench.train.loop import train_and_evaluate
    from relbench.train.writers import results_table

    results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if joined:
        jax.distributed.shutdown()  # a barrier: no process exits while others still work
    if jax.process_index() == 0:
        print(results_table(results))
        print(f"results written to {_WORKDIR.value}/results.json")


def _launch(argv: list[str]) -> None:
    from relbench.train import launch

    args = argv[1:]
    if args[:1] == ["train"]:
        args = args[1:]
    if _CONFIG.value is not None or _WORKDIR.value is not None or not args:
        raise UsageError(
            "launch takes the train flags after '--': relbench launch --processes N -- "
            "--config FILE[:ARG] --workdir DIR"
        )
    sys.exit(launch.launch(args, _PROCESSES.value, _DEVICES_PER_PROCESS.value, _PORT.value))


def _sweep(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise UsageError("sweep needs --config FILE[:ARG] and --workdir ROOT")
    from relbench.sweeps import runner

    config_flag = FLAGS["config"]
    sys.exit(
        runner.run_sweep(
            config_flags.get_config_filename(config_flag),
            _CONFIG.value,
            config_flags.get_override_values(config_flag),
            _WORKDIR.value,
            parallel=_PARALLEL.value,
        )
    )


COMMANDS = {"train": _train, "launch": _launch, "sweep": _sweep}


def _underscored(argv: list[str]) -> list[str]:
    """``--devices-per-process`` -> ``--devices_per_process`` (flags before ``--`` only)."""
    end = argv.index("--") if "--" in argv else len(argv)
    fixed = []
    for arg in argv[:end]:
        name, eq, value = arg.partition("=")
        if name.startswith("--") and "." not in name:
            name = "--" + name[2:].replace("-", "_")
        fixed.append(name + eq + value)
    return fixed + argv[end:]


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
        app.run(_guarded(COMMANDS[command]), argv=_underscored(argv))
    except UsageError as error:  # raised while the config file is loaded
        print(f"relbench: error: {error}", file=sys.stderr)
        sys.exit(2)

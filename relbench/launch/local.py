"""``relbench launch``: N local processes joined by JAX's real multi-process runtime.

    relbench launch --processes 2 --devices_per_process 2 -- \\
        --config experiments/digits_mlp.py:smoke --workdir runs/digits_2x2

Process ``i`` runs ``relbench train ARGS --coordinator_address=127.0.0.1:PORT
--num_processes=N --process_id=i``; process 0 hosts the coordinator. With
``--devices_per_process D`` each process sees D CPU devices (collectives over gloo),
which is how tests and laptops exercise the multi-host code path; on a cluster, start
one process per host with the same flags instead (README, "Scaling out").

If any process fails, the launcher stops the others (they would otherwise wait in a
collective until JAX's heartbeat timeout) and exits with the failed process's status.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence

from relbench.errors import UsageError
from relbench.launch.processes import relbench_command, sigterm_as_exit, stop

_POLL_SECONDS = 0.1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_commands(
    args: Sequence[str], processes: int, coordinator_address: str
) -> list[list[str]]:
    """One ``relbench train`` argv per process, each with its place in the run."""
    return [
        relbench_command(
            "train",
            *args,
            f"--coordinator_address={coordinator_address}",
            f"--num_processes={processes}",
            f"--process_id={index}",
        )
        for index in range(processes)
    ]


def worker_env(devices_per_process: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if devices_per_process is not None:
        env["JAX_PLATFORMS"] = "cpu"
        env["JAX_NUM_CPU_DEVICES"] = str(devices_per_process)
    return env


def launch(
    args: Sequence[str],
    processes: int,
    devices_per_process: int | None = None,
    port: int | None = None,
) -> int:
    """Runs ``relbench train ARGS`` as ``processes`` local processes; returns the exit status.

    Args:
      args: the ``relbench train`` flags (``--config ... --workdir ...``).
      processes: the number of processes, N >= 1.
      devices_per_process: CPU devices per process; ``None`` keeps each process's
        default platform and devices.
      port: the coordinator's port on 127.0.0.1; a free one when ``None``.
    """
    if processes < 1:
        raise UsageError(f"--processes {processes} must be at least 1")
    if devices_per_process is not None and devices_per_process < 1:
        raise UsageError(f"--devices_per_process {devices_per_process} must be at least 1")
    if any(a.split("=")[0] in ("--process_id", "--num_processes") for a in args):
        raise UsageError("launch sets --num_processes and --process_id itself; remove them")
    address = f"127.0.0.1:{port or free_port()}"
    env = worker_env(devices_per_process)

    workers: list[subprocess.Popen] = []
    with sigterm_as_exit():
        try:
            for argv in worker_commands(args, processes, address):
                workers.append(subprocess.Popen(argv, env=env))
            while True:
                codes = [w.poll() for w in workers]
                failed = [c for c in codes if c not in (None, 0)]
                if failed:
                    return failed[0]
                if all(c == 0 for c in codes):
                    return 0
                time.sleep(_POLL_SECONDS)
        finally:
            stop(workers)

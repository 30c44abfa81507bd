"""Child processes of a relbench command: how to start them and how to stop them.

Used by ``relbench launch`` (one multi-process run) and ``relbench sweep`` (one
single-process run per trial): both start ``relbench`` subprocesses with this
interpreter and must not leave them running when they stop or are stopped.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

_GRACE_SECONDS = 10.0


def relbench_command(*args: str) -> list[str]:
    """The argv that runs ``relbench ARGS`` with this interpreter."""
    return [sys.executable, "-m", "relbench", *args]


@contextlib.contextmanager
def sigterm_as_exit():
    """Within, SIGTERM raises SystemExit, so ``finally`` blocks stop the children."""

    def on_sigterm(signum, frame):
        del frame
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop(workers: Sequence[subprocess.Popen]) -> None:
    """SIGTERM every live worker, then SIGKILL whichever outlives the grace period."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_SECONDS
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        if worker.poll() is None:
            worker.kill()
            worker.wait()

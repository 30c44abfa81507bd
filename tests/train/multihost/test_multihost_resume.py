"""Multi-process runs resume bit for bit, and checkpoints move between topologies.

A 2-process run SIGKILLed (launcher and workers at once, as when a host dies) resumes
to the same final parameters as the run never stopped. A checkpoint written by one
process restores in two and training continues; and back from two to one, each time
on another number of devices too.
"""

import os
import shutil
import signal
import subprocess
import time

import numpy as np


def _drop_last_checkpoint(workdir) -> int:
    """Deletes the final checkpoint and results, as if the run had stopped earlier."""
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    shutil.rmtree(workdir / "checkpoints" / str(steps[-1]))
    (workdir / "results.json").unlink()
    return steps[-2]


def test_sigkilled_two_process_run_resumes_bitwise(runs, run_2x2, tmp_path):
    workdir = tmp_path / "killed"
    process = subprocess.Popen(
        runs.command(workdir, processes=2, devices=2),
        env=runs.env(2),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the launcher and its workers
    )
    first_checkpoint = workdir / "checkpoints" / "4"
    deadline = time.monotonic() + runs.TIMEOUT_S
    while not first_checkpoint.exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (workdir / "results.json").exists(), "the run ended before it was killed"

    runs.run(workdir, processes=2, devices=2)
    for a, b in zip(runs.params(run_2x2), runs.params(workdir), strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs.results(workdir) == runs.results(run_2x2)


def test_checkpoints_move_between_one_and_two_processes(runs, run_1x4, run_2x2, tmp_path):
    # 1 process x 4 devices -> 2 processes x 1 device; 2 x 2 -> 1 x 1.
    for source, processes, devices in ((run_1x4, 2, 1), (run_2x2, 1, 1)):
        workdir = tmp_path / f"from_{source.name}"
        shutil.copytree(source, workdir)
        resumed_from = _drop_last_checkpoint(workdir)
        before = runs.logged_steps(workdir)

        runs.run(workdir, processes=processes, devices=devices)
        # It continued from the checkpoint (no step before it was trained again)...
        new_steps = runs.logged_steps(workdir)[len(before) :]
        assert new_steps and min(new_steps) > resumed_from
        # ...to the end, where all topologies agree up to float reduction order.
        for a, b in zip(runs.params(source), runs.params(workdir), strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        assert runs.results(workdir).keys() == runs.results(source).keys()

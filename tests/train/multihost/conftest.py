"""Runs of ``relbench`` in subprocesses with a chosen number of processes and devices.

The 4 fake devices of the test session's own JAX do not carry over, so every run is a
fresh ``python -m relbench`` with its own env. Tests get these helpers through the
``runs`` fixture; ``run_2x2`` / ``run_1x4`` are shared, finished reference runs.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from relbench.train.checkpoints import load_final_params

ROOT = pathlib.Path(__file__).resolve().parents[3]
# Dropout (random draws), batch norms (precise statistics after training) and a post-hoc
# step: every phase of a run, on every topology.
CONFIG = f"{ROOT}/experiments/digits_cnn.py:mc_dropout,smoke"
OVERRIDES = ["--config.posthoc=('temperature_scaling',)"]
TIMEOUT_S = 240


def env(devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": str(devices),
        "PYTHONPATH": str(ROOT),
    }


def command(workdir: pathlib.Path, processes: int, devices: int) -> list[str]:
    """``relbench train`` on 1 process x ``devices``, or ``relbench launch`` of several."""
    train = [f"--config={CONFIG}", *OVERRIDES, f"--workdir={workdir}"]
    if processes == 1:
        return [sys.executable, "-m", "relbench", "train", *train]
    return [
        sys.executable, "-m", "relbench", "launch", f"--processes={processes}",
        f"--devices_per_process={devices}", "--", *train,
    ]  # fmt: skip


def run(workdir: pathlib.Path, processes: int, devices: int) -> pathlib.Path:
    """Trains (or resumes) to the end; fails the test with the output if the run fails."""
    done = subprocess.run(
        command(workdir, processes, devices),
        env=env(devices),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def results(workdir: pathlib.Path) -> dict:
    return json.loads((workdir / "results.json").read_text())


def params(workdir: pathlib.Path) -> list[np.ndarray]:
    return jax.tree.leaves(load_final_params(workdir))


def logged_steps(workdir: pathlib.Path) -> list[int]:
    """The step of every train record in ``metrics.jsonl``, in order of writing."""
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [r["step"] for r in records if "train/loss" in r]


@pytest.fixture(scope="session")
def runs():
    """This module, so tests call ``runs.run(...)``, ``runs.params(...)``..."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def run_2x2(tmp_path_factory) -> pathlib.Path:
    """A finished run: 2 processes x 2 CPU devices."""
    return run(tmp_path_factory.mktemp("run_2x2"), processes=2, devices=2)


@pytest.fixture(scope="session")
def run_1x4(tmp_path_factory) -> pathlib.Path:
    """A finished run: 1 process x 4 CPU devices."""
    return run(tmp_path_factory.mktemp("run_1x4"), processes=1, devices=4)

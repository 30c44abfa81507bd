"""When a run joins jax.distributed, and how launch and the CLI take their flags."""

import os
import pathlib
import subprocess
import sys

import pytest

from relbench.errors import UsageError
from relbench.launch import distributed, processes
from relbench.launch import local as launch


def test_single_process_without_flags_or_cluster():
    assert distributed.detected_cluster() is None  # this test machine is no cluster
    assert distributed.initialize("auto") is False
    assert distributed.initialize("off") is False


def test_contradicting_settings_are_usage_errors():
    with pytest.raises(UsageError, match="not one of"):
        distributed.initialize("maybe")
    with pytest.raises(UsageError, match="contradicts"):
        distributed.initialize("off", num_processes=2)


def test_launch_gives_each_worker_its_place():
    commands = launch.worker_commands(["--config=c.py", "--workdir=w"], 3, "127.0.0.1:1234")
    assert len(commands) == 3
    for index, argv in enumerate(commands):
        assert argv[:4] == [sys.executable, "-m", "relbench", "train"]
        assert argv[4:] == [
            "--config=c.py",
            "--workdir=w",
            "--coordinator_address=127.0.0.1:1234",
            "--num_processes=3",
            f"--process_id={index}",
        ]
    env = launch.worker_env(devices_per_process=2)
    assert env["JAX_NUM_CPU_DEVICES"] == "2" and env["JAX_PLATFORMS"] == "cpu"


def test_launch_refuses_bad_counts_and_own_flags():
    with pytest.raises(UsageError, match="at least 1"):
        launch.launch(["--config=c.py"], processes=0)
    with pytest.raises(UsageError, match="sets --num_processes"):
        launch.launch(["--config=c.py", "--process_id=1"], processes=2)


def test_launch_stops_the_others_when_one_fails(monkeypatch):
    # Worker 1 fails at once; worker 0 would sleep for a minute: launch must stop it.
    def commands(args, processes, address):
        del args, address
        sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
        return [sleep, [sys.executable, "-c", "raise SystemExit(3)"]][:processes]

    monkeypatch.setattr(launch, "worker_commands", commands)
    monkeypatch.setattr(processes, "_GRACE_SECONDS", 5.0)
    assert launch.launch(["--config=c.py"], processes=2) == 3


def test_launch_without_train_flags_is_a_usage_error():
    done = subprocess.run(
        [sys.executable, "-m", "relbench", "launch", "--processes=2"],
        env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[2])},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "relbench: error: launch takes the train options after '--'" in done.stderr

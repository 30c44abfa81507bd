"""``relbench sweep``: one run per trial, resumable, finished trials skipped."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from relbench import configs
from relbench.errors import UsageError
from relbench.sweeps import runner

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRIALS = [
    {"seed": 0, "optimizer.learning_rate": 0.02, "model.hidden_sizes": (16,)},
    {"seed": 1, "optimizer.learning_rate": 0.05, "model.hidden_sizes": (8, 8)},
]


@pytest.fixture
def config_file(tmp_path) -> pathlib.Path:
    """experiments/digits_mlp.py plus a sweep() of two trials."""
    path = tmp_path / "digits_sweep.py"
    source = (ROOT / "experiments" / "digits_mlp.py").read_text()
    path.write_text(f"{source}\n\ndef sweep():\n    return {TRIALS!r}\n")
    return path


def _sweep(config_file, root):
    done = subprocess.run(
        [
            sys.executable, "-m", "relbench", "sweep", f"--config={config_file}:smoke",
            f"--workdir={root}", "--parallel=2", "--config.train.num_epochs=0.25",
            "--config.evaluation.shift_suite=''",  # no corruption sets: a lighter run
        ],
        env={**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2",
             "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_sweep_runs_each_trial_once_and_resumes(config_file, tmp_path):
    root = tmp_path / "sweep"
    out = _sweep(config_file, root)
    assert "trial 0: finished" in out and "trial 1: finished" in out
    for index, trial in enumerate(TRIALS):
        workdir = root / f"trial_00{index}"
        config = json.loads((workdir / "config.json").read_text())
        assert config["seed"] == trial["seed"]
        assert config["optimizer"]["learning_rate"] == trial["optimizer.learning_rate"]
        assert tuple(config["model"]["hidden_sizes"]) == trial["model.hidden_sizes"]
        assert config["train"]["num_epochs"] == 0.25  # the command line's overrides too
        assert config["evaluation"]["shift_suite"] == ""
        assert (workdir / "results.json").exists()
    assert (root / "report" / "leaderboard.md").exists()  # relbench report over the trials
    mtimes = [(root / f"trial_00{i}" / "results.json").stat().st_mtime_ns for i in (0, 1)]

    out = _sweep(config_file, root)  # everything finished: nothing runs
    assert "2 already finished" in out and "started" not in out
    assert mtimes == [(root / f"trial_00{i}" / "results.json").stat().st_mtime_ns for i in (0, 1)]

    (root / "trial_001" / "results.json").unlink()  # as if killed before the end
    out = _sweep(config_file, root)
    assert "trial 1: started" in out and "trial 0: started" not in out
    assert (root / "trial_001" / "results.json").exists()


def test_changed_sweep_is_refused_before_running(config_file, tmp_path):
    root = tmp_path / "sweep"
    (root / "trial_000").mkdir(parents=True)
    (root / "trial_000" / "trial.json").write_text(
        json.dumps({"index": 0, "overrides": {"seed": 5}})
    )
    with pytest.raises(UsageError, match="another trial"):
        runner.run_sweep(f"{config_file}:smoke", [], root)
    assert not (root / "trial_001").exists()


def test_unknown_key_in_sweep_is_refused(tmp_path, config_file):
    config_file.write_text(
        config_file.read_text() + "\n\ndef sweep():\n    return [{'optimizer.lr': 0.1}]\n"
    )
    with pytest.raises(UsageError, match="optimizer.lr"):
        runner.run_sweep(f"{config_file}:smoke", [], tmp_path / "s")


def test_config_without_sweep_is_refused(tmp_path):
    path = tmp_path / "plain.py"
    path.write_text("def get_config(arg=None):\n    return None\n")
    with pytest.raises(UsageError, match="defines no sweep"):
        runner.load_sweep(f"{path}:smoke")


def test_trial_values_read_back_exactly(config_file):
    config = configs.load(f"{config_file}:smoke")
    values = {
        "optimizer.learning_rate": 0.1 + 0.2,  # not a short decimal
        "model.hidden_sizes": (8, 8),
        "optimizer.name": "adam",
        "train.log_every_steps": 7,
    }
    texts = {key: runner.flag_value(value) for key, value in values.items()}
    trial = runner.check_overrides(config, texts, "trial")
    for key, value in values.items():
        section, leaf = key.split(".")
        assert trial[section][leaf] == value


def test_failed_trials_are_reported_and_the_rest_run(tmp_path, capsys):
    # Trial 1 fails at once; trials 0 and 2 finish; at most 2 run at the same time.
    commands = {
        i: ([sys.executable, "-c", f"raise SystemExit({3 if i == 1 else 0})"], tmp_path)
        for i in range(3)
    }
    assert runner.run_trials(commands, parallel=2) == {0: 0, 1: 3, 2: 0}
    out = capsys.readouterr().out
    assert "trial 1: FAILED (status 3" in out and "trial 2: finished" in out

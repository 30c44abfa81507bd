"""The active-learning loop on the one train loop: bitwise resume after SIGKILL between
and inside rounds, the report's learning curves, and its bad-input errors."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from relbench import configs
from relbench.report import write_report
from relbench.tasks.active_learning import active_learn
from relbench.train.checkpoints import load_final_params

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC = f"{REPO}/experiments/digits_active_learning.py:mc_dropout,smoke"


def smoke_config(acquisition="bald", seed=0, num_rounds=1):
    config = configs.load(SPEC)
    with config.unlocked():
        config.seed = seed
        config.active_learning.acquisition = acquisition
        config.active_learning.num_rounds = num_rounds
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bald")
    return workdir, active_learn(smoke_config(), workdir)


KILLED = """
import os, signal
from relbench import configs
from relbench.tasks import active_learning
from relbench.train import loop, writers
config = configs.load({spec!r})
with config.unlocked():
    config.active_learning.acquisition = "bald"
    config.active_learning.num_rounds = 1
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if {where!r} == "between_rounds":  # round 1's labelled set is written, it has not trained
    train = loop.train_and_evaluate
    def train_or_die(config, workdir):
        if str(workdir).endswith("round_001"):
            die()
        return train(config, workdir)
    loop.train_and_evaluate = train_or_die
else:  # inside round 1, ten steps after its step-40 checkpoint
    write = writers.RunWriter.write
    def write_then_die(self, step, prefix, metrics):
        write(self, step, prefix, metrics)
        if str(self.workdir).endswith("round_001") and step == 60:
            die()
    writers.RunWriter.write = write_then_die
active_learning.active_learn(config, {workdir!r})
"""


def kill_at(where: str, workdir: pathlib.Path) -> None:
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(KILLED.format(spec=SPEC, where=where, workdir=str(workdir))),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]


def test_killed_between_and_inside_rounds_resumes_bitwise(finished, tmp_path):
    workdir, curve = finished
    kill_at("between_rounds", tmp_path)
    assert (tmp_path / "labelled" / "round_001.json").exists()
    assert not (tmp_path / "rounds" / "round_001").exists()
    kill_at("inside_round", tmp_path)
    checkpoints = tmp_path / "rounds" / "round_001" / "checkpoints"
    assert sorted(int(p.name) for p in checkpoints.iterdir()) == [40]
    assert active_learn(smoke_config(), tmp_path) == curve
    for name in ("learning_curve.json", "labelled/round_000.json", "labelled/round_001.json"):
        assert (tmp_path / name).read_bytes() == (workdir / name).read_bytes(), name
    for r in ("round_000", "round_001"):
        jax.tree.map(
            np.testing.assert_array_equal,
            load_final_params(tmp_path / "rounds" / r),
            load_final_params(workdir / "rounds" / r),
        )
    # The acquired examples come from the pool, the labelled set grows by the batch.
    first, second = (
        json.loads((workdir / f"labelled/round_00{r}.json").read_text()) for r in (0, 1)
    )
    assert second["indices"][:20] == first["indices"] and len(set(second["indices"])) == 30
    assert curve["num_labels"] == [20, 30]


def test_report_draws_one_learning_curve_per_acquisition(finished, tmp_path):
    workdir, curve = finished
    other = tmp_path / "seed1"  # another seed of the same setting: a copy with other numbers
    other.mkdir()
    config = json.loads((workdir / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "seed": 1}))
    shifted = {**curve, "accuracy": [a + 0.1 for a in curve["accuracy"]]}
    (other / "learning_curve.json").write_text(json.dumps(shifted))
    written = write_report([workdir, other], tmp_path / "report")
    figures = [p for p in written if p.name.startswith("learning_curves")]
    assert len(figures) == 1 and figures[0].stat().st_size > 0
    markdown = (tmp_path / "report" / "leaderboard.md").read_text()
    mean = np.mean([curve["accuracy"][-1], shifted["accuracy"][-1]])
    assert f"| bald | 30 | {mean:.4f} ± " in markdown


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "relbench", "active-learn", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("method", "overrides", "message"),
    [
        (
            "deterministic",
            [],
            "acquisition 'bald' needs several members or samples, but method 'deterministic'",
        ),
        ("mc_dropout", ["--config.active_learning.acquisition_batch=2000"], "is smaller than"),
    ],
    ids=["single_member_bald", "pool_smaller_than_batch"],
)
def test_bad_input_is_one_line_and_exit_2(method, overrides, message, tmp_path):
    spec = SPEC.replace(":mc_dropout,", f":{method},")
    acquisition = "--config.active_learning.acquisition=bald"
    result = _cli("--config", spec, acquisition, *overrides, "--workdir", str(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "labelled").exists()

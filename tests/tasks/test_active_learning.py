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
from relbench.errors import UsageError
from relbench.report import write_report
from relbench.tasks.active_learning import active_learn
from relbench.train.checkpoints import load_final_params

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC = f"{REPO}/experiments/digits_active_learning.py:mc_dropout,smoke"


# Every active-learning run here is a subprocess sharing one persistent compilation
# cache: the rounds compile the same programs (the smoke config's learning rate is
# constant, so no step count enters them), and each is compiled once for the module.
# They run on one CPU device: the loop's sharding is tested elsewhere, and several fake
# devices make each of the ~3,000 small steps slower.
RUN = """
import json, sys
from relbench import configs
from relbench.tasks.active_learning import active_learn
for seed, acquisition, workdir in json.loads(sys.argv[1]):
    config = configs.load({spec!r})
    with config.unlocked():
        config.seed = seed
        config.active_learning.acquisition = acquisition
        config.active_learning.num_rounds = {rounds}
    {before_run}
    active_learn(config, workdir)
"""
ROUNDS = 2
SEEDS = (0, 1)


def run_loop(cache, runs, before_run="pass", expect=0):
    code = RUN.format(spec=SPEC, rounds=ROUNDS, before_run=before_run)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), json.dumps(runs)],
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "JAX_NUM_CPU_DEVICES": "1",
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == expect, result.stderr[-3000:]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """BALD and random acquisition on digits (MC dropout), seeds 0 and 1, 2 rounds."""
    root = tmp_path_factory.mktemp("active_learning")
    runs = [(seed, a, str(root / f"{a}_{seed}")) for seed in SEEDS for a in ("bald", "random")]
    run_loop(root / "cache", runs)
    return root, {
        (a, seed): json.loads((pathlib.Path(w) / CURVE).read_text()) for seed, a, w in runs
    }


CURVE = "learning_curve.json"


def test_bald_beats_random_on_digits_averaged_over_seeds(finished):
    _, curves = finished
    assert all(c["num_labels"] == [20, 30, 40] for c in curves.values())
    final = {a: np.mean([curves[a, s]["accuracy"][-1] for s in SEEDS]) for a in ("bald", "random")}
    # Measured with 40 labels: BALD 0.802, random 0.754 (seeds 0, 1: 0.816/0.788 vs
    # 0.769/0.738); with 50 labels (3 rounds) 0.868 vs 0.811. The same initial 20
    # labels (and so the same first round) per seed.
    assert final["bald"] > final["random"] + 0.03, final
    for seed in SEEDS:
        assert curves["bald", seed]["accuracy"][0] == curves["random", seed]["accuracy"][0]


# Killed between rounds: round 1's labelled set is written, it has not trained; inside a
# round: round 2 (375 steps), 100 steps after its step-200 checkpoint.
DIE_BETWEEN_ROUNDS = """import os, signal; from relbench.train import loop
    train = loop.train_and_evaluate
    def train_or_die(config, workdir):
        if str(workdir).endswith("round_001"):
            os.kill(os.getpid(), signal.SIGKILL)
        return train(config, workdir)
    loop.train_and_evaluate = train_or_die"""
DIE_INSIDE_ROUND = """import os, signal; from relbench.train import writers
    write = writers.RunWriter.write
    def write_then_die(self, step, prefix, metrics):
        write(self, step, prefix, metrics)
        if str(self.workdir).endswith("round_002") and step == 300:
            os.kill(os.getpid(), signal.SIGKILL)
    writers.RunWriter.write = write_then_die"""


def test_killed_between_and_inside_rounds_resumes_bitwise(finished, tmp_path):
    root, curves = finished
    workdir, run = root / "bald_0", [(0, "bald", str(tmp_path))]
    run_loop(root / "cache", run, DIE_BETWEEN_ROUNDS, expect=-9)
    assert (tmp_path / "labelled" / "round_001.json").exists()
    assert not (tmp_path / "rounds" / "round_001").exists()
    run_loop(root / "cache", run, DIE_INSIDE_ROUND, expect=-9)
    checkpoints = tmp_path / "rounds" / "round_002" / "checkpoints"
    assert sorted(int(p.name) for p in checkpoints.iterdir()) == [200]
    run_loop(root / "cache", run)
    names = [CURVE] + [f"labelled/round_00{r}.json" for r in range(ROUNDS + 1)]
    for name in names:
        assert (tmp_path / name).read_bytes() == (workdir / name).read_bytes(), name
    for r in range(ROUNDS + 1):
        jax.tree.map(
            np.testing.assert_array_equal,
            load_final_params(tmp_path / "rounds" / f"round_00{r}"),
            load_final_params(workdir / "rounds" / f"round_00{r}"),
        )
    # The acquired examples come from the pool: the labelled set grows by the batch.
    labelled = [json.loads((workdir / n).read_text())["indices"] for n in names[1:]]
    for before, after in zip(labelled, labelled[1:], strict=False):
        assert after[: len(before)] == before and len(set(after)) == len(before) + 10


def test_report_draws_one_learning_curve_per_acquisition(finished, tmp_path):
    root, curves = finished
    written = write_report(sorted(root.glob("*_*")), tmp_path)
    figures = [p for p in written if p.name.startswith("learning_curves")]
    assert len(figures) == 1 and figures[0].stat().st_size > 0
    markdown = (tmp_path / "leaderboard.md").read_text()
    for acquisition in ("bald", "random"):
        final = [curves[acquisition, s]["accuracy"][-1] for s in SEEDS]
        row = f"| {acquisition} | 40 | {np.mean(final):.4f} ± {np.std(final, ddof=1):.4f} |"
        assert row in markdown, markdown


def test_a_single_member_method_with_bald_is_one_line_and_exit_2(tmp_path):
    spec = SPEC.replace(":mc_dropout,", ":deterministic,")
    result = subprocess.run(
        [sys.executable, "-m", "relbench", "active-learn", "--config", spec]
        + ["--config.active_learning.acquisition=bald", "--workdir", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    message = "acquisition 'bald' needs several members or samples, but method 'deterministic'"
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "labelled").exists()


def test_a_pool_smaller_than_the_acquisitions_is_refused_before_training(tmp_path):
    config = configs.load(SPEC)
    with config.unlocked():
        config.active_learning.acquisition_batch = 2000
    with pytest.raises(UsageError, match="is smaller than 2 acquisitions of 2000; lower"):
        active_learn(config, tmp_path)
    assert not (tmp_path / "labelled").exists()


def test_a_round_trains_on_its_labelled_subset_and_fine_tunes_from_the_previous_round():
    from relbench import data as data_lib
    from relbench.tasks.active_learning import round_config

    config = configs.load(SPEC)
    labelled = np.array([5, 3, 9])
    fine_tune = round_config(config, labelled, "runs/round_000")
    assert "active_learning" not in fine_tune and fine_tune.init_from.path == "runs/round_000"
    assert "init_from" not in round_config(config, labelled, None)
    dataset = data_lib.make(**fine_tune.dataset)
    full = data_lib.make(**config.dataset)
    np.testing.assert_array_equal(
        dataset.train.read(np.arange(3))["input"], full.train.read(labelled)["input"]
    )

"""``relbench benchmark`` (``make run``): runs in worker processes, a compilation cache,
the same results as ``relbench train``."""

import json
import pathlib
import subprocess

import pytest

from relbench.cli.benchmark import run_benchmark
from relbench.errors import UsageError
from relbench.launch.processes import relbench_command

MOONS = "experiments/two_moons_mlp.py"


def test_benchmark_workers_give_the_results_of_relbench_train(tmp_path, monkeypatch):
    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[2])
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")  # the benchmark's own cache, not the suite's
    # One worker: seed 1 runs after seed 0, on the programs seed 0 left in the cache.
    failed = run_benchmark(
        tmp_path / "bench", (MOONS,), ("deterministic",), ",smoke", {MOONS: (0, 1)}, workers=1
    )
    assert failed == []
    runs = tmp_path / "bench" / "two_moons_mlp"
    assert sorted(p.name for p in runs.iterdir()) == ["deterministic", "deterministic_seed1"]
    assert any((tmp_path / "bench" / "compilation_cache").iterdir())
    assert (tmp_path / "bench" / "report" / "leaderboard.md").exists()
    alone = tmp_path / "alone"
    subprocess.run(
        relbench_command(
            "train",
            f"--config={MOONS}:deterministic,smoke",
            "--config.seed=1",
            f"--workdir={alone}",
        ),
        check=True,
        capture_output=True,
    )
    got = json.loads((runs / "deterministic_seed1" / "results.json").read_text())
    assert got == json.loads((alone / "results.json").read_text())  # bit for bit, uncached


def test_benchmark_refuses_no_workers_and_a_missing_config(tmp_path):
    with pytest.raises(UsageError, match="--workers 0 must be at least 1"):
        run_benchmark(tmp_path, workers=0)
    with pytest.raises(UsageError, match="no experiment config nowhere.py .*--experiments"):
        run_benchmark(tmp_path, ("nowhere.py",))
    assert not any(tmp_path.iterdir())  # nothing written

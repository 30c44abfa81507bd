"""``relbench eval``: one run reproduces its results; runs combine into one ensemble."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss

from relbench.errors import UsageError
from relbench.train import sharding
from relbench.train.ensemble_eval import evaluate_runs, load_run
from relbench.train.loop import train_and_evaluate
from tests.methods.smoke import smoke_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs of different methods and seeds on the same dataset."""
    dirs = []
    for seed, method in enumerate(["deterministic", "batchensemble"]):
        config = smoke_config(method)
        with config.unlocked():
            config.seed = seed
            config.train.eval_batch_size = 128
        workdir = tmp_path_factory.mktemp(f"run{seed}")
        train_and_evaluate(config, workdir)
        dirs.append(workdir)
    return dirs


def test_one_run_reproduces_its_results(runs):
    results = json.loads((runs[1] / "results.json").read_text())
    again = evaluate_runs([runs[1]])
    for set_name, metrics in results.items():
        for name, value in metrics.items():
            np.testing.assert_allclose(again[set_name][name], value, rtol=1e-6, err_msg=name)


def test_ensemble_metrics_equal_sklearn_on_the_mean_member_softmax(runs):
    results = evaluate_runs(runs)
    mesh = sharding.data_mesh()
    test = load_run(runs[0], mesh).exp.dataset.eval_sets["test"].source
    data = test.read(np.arange(len(test)))
    probs = []
    for run_dir in runs:
        run = load_run(run_dir, mesh)
        logits, _ = run.exp.method.predict_fn(
            run.exp.model.apply, run.state, data["input"], run.eval_key
        )
        probs.append(np.asarray(jax.nn.softmax(logits), np.float64))  # [M_i, N, K]
    mean = np.concatenate(probs).mean(0)  # 1 + 4 members
    mean /= mean.sum(-1, keepdims=True)  # float32 softmax rounding
    np.testing.assert_allclose(
        results["test"]["accuracy"], accuracy_score(data["label"], mean.argmax(-1)), rtol=1e-6
    )
    np.testing.assert_allclose(
        results["test"]["nll"],
        log_loss(data["label"], mean, labels=np.arange(mean.shape[-1])),
        rtol=1e-4,
    )


def test_runs_of_different_datasets_are_refused(runs, tmp_path):
    other = shutil.copytree(runs[0], tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["dataset"]["num_ood"] = 100
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="different datasets"):
        evaluate_runs([runs[0], other])


def test_a_directory_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no config.json"):
        evaluate_runs([tmp_path])


def test_cli_needs_ensemble_flag_for_several_runs(runs):
    command = [sys.executable, "-c", "from relbench.cli import main; main()"]
    command += ["eval", str(runs[0]), str(runs[1])]
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parents[2])}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 2
    assert "pass --ensemble" in done.stderr

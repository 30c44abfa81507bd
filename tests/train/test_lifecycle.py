"""The phases after the last step: a run SIGKILLed during or after the after-training
step, or after the post-hoc fit, resumes to a byte-identical results.json without
redoing what it had finished; stages are reused only under the settings they were
computed with."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

from relbench import configs
from relbench.errors import UsageError
from relbench.train import loop
from relbench.train.ensemble_eval import evaluate_runs

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC = str(REPO / "experiments/digits_cnn.py") + ":swag,smoke"
OVERRIDES = {"num_collected": 4, "rank": 2, "num_samples": 3}


def lifecycle_config():
    """A batch-norm CNN with SWAG (precise statistics, then the method's after-training
    step) and temperature scaling: every phase of a run."""
    config = configs.load(SPEC)
    with config.unlocked():
        config.method.update(OVERRIDES)
        config.posthoc = ("temperature_scaling",)
    return config


KILLED_RUN = """
    import os, signal
    from relbench import configs
    from relbench.train import loop
    config = configs.load({spec!r})
    with config.unlocked():
        config.method.update({overrides!r})
        config.posthoc = ("temperature_scaling",)
    die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
    where = {where!r}
    if where == "during_after_training":
        split_data = loop.split_data
        def dying_data(exp, mesh):
            data = split_data(exp, mesh)
            def batches(split):
                for index, batch in enumerate(data(split)):
                    if index == 1:
                        die()
                    yield batch
            return batches
        loop.split_data = dying_data
    else:
        setattr(loop, where, die)
    loop.train_and_evaluate(config, {workdir!r})
"""


def kill_at(where: str, workdir: pathlib.Path) -> None:
    code = KILLED_RUN.format(spec=SPEC, overrides=OVERRIDES, where=where, workdir=str(workdir))
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished")
    results = loop.train_and_evaluate(lifecycle_config(), workdir)
    return workdir, results


def count_calls(monkeypatch):
    """Counts the after-training runs and the post-hoc fits of the runs that follow."""
    calls = {"after_training": 0, "fit_posthoc": 0}
    steps, fit = loop.after_training_steps, loop.fit_posthoc

    def counted_steps(exp, state):
        after = steps(exp, state)

        def counted(*args, **kwargs):
            calls["after_training"] += 1
            return after(*args, **kwargs)

        return None if after is None else counted

    def counted_fit(*args, **kwargs):
        calls["fit_posthoc"] += 1
        return fit(*args, **kwargs)

    monkeypatch.setattr(loop, "after_training_steps", counted_steps)
    monkeypatch.setattr(loop, "fit_posthoc", counted_fit)
    return calls


def test_the_run_went_through_every_phase(finished):
    workdir, results = finished
    assert {"after_training", "posthoc"} <= {p.name for p in (workdir / "stages").iterdir()}
    (step,) = json.loads((workdir / "posthoc.json").read_text())["steps"]
    assert step["name"] == "temperature_scaling" and step["fitted"]["temperature"] > 0
    assert "raw/nll" in results["test"] and "nll" in results["test"]
    # `relbench eval RUN_DIR` rebuilds the final state (after training) and the post-hoc
    # steps, and reproduces the run's own results.
    assert evaluate_runs([workdir]) == results


@pytest.mark.parametrize(
    "where, redone",
    [
        ("during_after_training", {"after_training": 1, "fit_posthoc": 1}),
        ("fit_posthoc", {"after_training": 0, "fit_posthoc": 1}),  # after after_training
        ("evaluate", {"after_training": 0, "fit_posthoc": 0}),  # after the post-hoc fit
    ],
)
def test_sigkill_resumes_to_identical_results_without_refitting(
    where, redone, finished, tmp_path, monkeypatch
):
    workdir, results = finished
    kill_at(where, tmp_path)
    assert not (tmp_path / "results.json").exists()
    calls = count_calls(monkeypatch)
    resumed = loop.train_and_evaluate(lifecycle_config(), tmp_path)
    assert calls == redone
    assert resumed == results
    for name in ("results.json", "posthoc.json"):
        assert (tmp_path / name).read_bytes() == (workdir / name).read_bytes(), name


def test_a_stage_is_not_reused_under_other_settings(finished, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished[0], workdir)
    config = lifecycle_config()
    with config.unlocked():
        config.posthoc_hparams.temperature_scaling.max_temperature = 10.0
    key = "config.posthoc_hparams.temperature_scaling.max_temperature is 20.0 there"
    with pytest.raises(UsageError, match=f"another config: {key}.*new --workdir"):
        loop.train_and_evaluate(config, workdir)
    # The run's record of its config is kept, not overwritten by the refused one.
    assert not (workdir / "config.1.json").exists()
    # Without the record, the stage's own settings still refuse it.
    (workdir / "config.json").unlink()
    with pytest.raises(UsageError, match="stages/posthoc was computed with .*new --workdir"):
        loop.train_and_evaluate(config, workdir)
    config = lifecycle_config()
    with config.unlocked():
        config.train.refit_batches = 3
    (workdir / "config.json").unlink()
    with pytest.raises(UsageError, match="stages/after_training was computed with"):
        loop.train_and_evaluate(config, workdir)

"""The loop end to end: outputs, bitwise determinism, resume after SIGKILL, device
count, compile-once, and one clear error line for each kind of bad input."""

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
from relbench.train.checkpoints import load_final_params
from relbench.train.loop import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "experiments/digits_mlp.py") + ":{method},smoke"


def smoke_config(method="deterministic", **train):
    config = configs.load(SMOKE.format(method=method))
    with config.unlocked():
        config.train.update(train)
    return config


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def run_python(code: str, env: dict | None = None, check=True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


@pytest.fixture(scope="module")
def mc_dropout_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mc_dropout")
    results = train_and_evaluate(smoke_config("mc_dropout"), workdir)
    return workdir, results


def test_run_writes_every_output(mc_dropout_run):
    workdir, results = mc_dropout_run
    assert json.loads((workdir / "results.json").read_text()) == results
    assert {"validation", "test", "ood_noise", "ood_heldout", "digits_c"} <= set(results)
    assert {"accuracy", "nll", "brier", "ece"} <= set(results["test"])
    assert json.loads((workdir / "config.json").read_text())["method"]["name"] == "mc_dropout"
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert all("step" in r for r in records)
    assert any("train/loss" in r for r in records) and any("test/nll" in r for r in records)
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert (workdir / "checkpoints").is_dir()


def test_same_seed_is_bitwise_identical(mc_dropout_run, tmp_path):
    workdir, results = mc_dropout_run
    again = train_and_evaluate(smoke_config("mc_dropout"), tmp_path)
    assert again == results
    assert (tmp_path / "results.json").read_bytes() == (workdir / "results.json").read_bytes()
    assert_trees_equal(load_final_params(tmp_path), load_final_params(workdir))


def test_other_seed_differs(mc_dropout_run, tmp_path):
    workdir, _ = mc_dropout_run
    config = smoke_config("mc_dropout")
    with config.unlocked():
        config.seed = 1
    train_and_evaluate(config, tmp_path)
    first = jax.tree.leaves(load_final_params(workdir))[0]
    assert not np.array_equal(jax.tree.leaves(load_final_params(tmp_path))[0], first)


def test_resume_after_sigkill_is_bitwise_identical(mc_dropout_run, tmp_path):
    """Kill (SIGKILL) three steps after the step-8 checkpoint, restart, compare."""
    workdir, results = mc_dropout_run
    killed = run_python(
        f"""
        import os, signal
        from relbench import configs
        from relbench.train import writers
        from relbench.train.loop import train_and_evaluate
        write = writers.RunWriter.write
        def write_then_die(self, step, prefix, metrics):
            write(self, step, prefix, metrics)
            if step == 10:
                os.kill(os.getpid(), signal.SIGKILL)
        writers.RunWriter.write = write_then_die
        train_and_evaluate(configs.load({SMOKE.format(method="mc_dropout")!r}), {str(tmp_path)!r})
        """,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [4, 8]
    resumed = train_and_evaluate(smoke_config("mc_dropout"), tmp_path)
    assert resumed == results
    assert_trees_equal(load_final_params(tmp_path), load_final_params(workdir))


def test_device_count_does_not_change_results(mc_dropout_run, tmp_path):
    """4 fake devices (this process) vs 1 device (a subprocess): same draws, same metrics."""
    workdir, results = mc_dropout_run
    assert jax.device_count() == 4
    run_python(
        f"""
        import jax
        from relbench import configs
        from relbench.train.loop import train_and_evaluate
        assert jax.device_count() == 1
        train_and_evaluate(configs.load({SMOKE.format(method="mc_dropout")!r}), {str(tmp_path)!r})
        """,
        env={"JAX_NUM_CPU_DEVICES": "1"},
    )
    single = json.loads((tmp_path / "results.json").read_text())
    for set_name, metrics in results.items():
        for name, value in metrics.items():
            np.testing.assert_allclose(single[set_name][name], value, rtol=1e-4, atol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        load_final_params(tmp_path),
        load_final_params(workdir),
    )


def test_train_step_compiles_once(tmp_path):
    """Doubling the number of steps adds no compilation."""
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, *_, **__: (
            compiles.append(event)
            if event == "/jax/core/compile/backend_compile_duration"
            else None
        )
    )
    counts = []
    for epochs in (0.25, 0.5):
        compiles.clear()
        train_and_evaluate(smoke_config(num_epochs=epochs), tmp_path / str(epochs))
        counts.append(len(compiles))
    assert counts[0] == counts[1] > 0


def test_checkpoint_every_step_resumes_without_retraining(tmp_path):
    config = smoke_config(num_epochs=0.1)
    first = train_and_evaluate(config, tmp_path)
    assert train_and_evaluate(config, tmp_path) == first  # finished run: evaluation only


# --- bad input: one clear line naming the problem and the fix -------------------------


def test_unknown_config_key_names_it():
    config = smoke_config()
    with config.unlocked():
        config.model.hiden_sizes = (3,)
    with pytest.raises(UsageError, match=r"unknown key config\.model\.hiden_sizes.*valid keys"):
        train_and_evaluate(config, "/tmp/unused")


def test_unknown_train_key_names_it(tmp_path):
    config = smoke_config()
    with config.unlocked():
        config.train.num_epoch = 3
    with pytest.raises(UsageError, match=r"config\.train\.num_epoch"):
        train_and_evaluate(config, tmp_path)


@pytest.mark.parametrize(
    "field,name", [("method", "mc_dropuot"), ("model", "mpl"), ("dataset", "digts")]
)
def test_unknown_names_list_the_choices(field, name, tmp_path):
    config = smoke_config()
    with config.unlocked():
        config[field].name = name
    with pytest.raises(UsageError, match=rf"unknown {field} '{name}'; choose one of"):
        train_and_evaluate(config, tmp_path)


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UsageError, match="cannot write to workdir .*choose a writable --workdir"):
        train_and_evaluate(smoke_config(), blocker / "run")
    assert blocker.read_text() == "not a directory"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = smoke_config(num_epochs=2.0, checkpoint_every_steps=4, log_every_steps=1)
    with config.unlocked():
        config.optimizer.learning_rate = 1e6
        config.optimizer.warmup_steps = 0
    with pytest.raises(UsageError, match="training diverged.*last good checkpoint.*learning_rate"):
        train_and_evaluate(config, tmp_path)
    for step in (tmp_path / "checkpoints").iterdir():
        params = load_final_params(tmp_path)
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params)), step


def test_cli_prints_one_error_line_for_unknown_override(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "relbench",
            "train",
            "--config",
            SMOKE.format(method="deterministic"),
            "--config.train.num_epoch=1",
            "--workdir",
            str(tmp_path),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "relbench: error: unknown key config.train.num_epoch; "
        "check the spelling against the config file"
    ]


def test_cli_trains_and_prints_results_table(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "relbench",
            "train",
            "--config",
            SMOKE.format(method="deterministic"),
            "--workdir",
            str(tmp_path),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ood_noise" in result.stdout and "accuracy" in result.stdout
    assert (tmp_path / "results.json").exists()


def test_cli_unknown_method_is_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "relbench",
            "train",
            "--config",
            str(REPO / "experiments/digits_mlp.py") + ":nosuch",
            "--workdir",
            str(tmp_path),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("relbench: error: unknown method")


def test_corrupt_checkpoint_is_named_and_left_in_place(tmp_path):
    config = smoke_config(num_epochs=0.25)
    train_and_evaluate(config, tmp_path)
    step_dir = max((tmp_path / "checkpoints").iterdir(), key=lambda p: int(p.name))
    for file in (step_dir / "state").rglob("*"):
        if file.is_file() and file.stat().st_size > 0:
            file.write_bytes(b"garbage")
    with pytest.raises(UsageError, match=rf"checkpoint .*{step_dir.name} cannot be restored"):
        train_and_evaluate(config, tmp_path)
    assert step_dir.exists()

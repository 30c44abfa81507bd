"""Bring your own data, model and predictions, end to end through ``relbench``'s CLI:
training on an .npz, an image folder and a CSV with no code; the same arrays through the
Python API; a pip-installed plugin's dataset and method; any model's predictions
evaluated into the very results.json a run writes."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import tomllib
import zipfile

import numpy as np
import PIL.Image
import pytest

from relbench import configs
from relbench import data as data_lib
from relbench.cli.main import main
from relbench.registry import Registry
from relbench.report.runs import group_runs, load_run
from relbench.train.loop import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
USER_DATA = REPO / "experiments" / "user_data"  # config templates for the user's files
PLUGIN = REPO / "tests" / "fixtures" / "demo_plugin"


def relbench(*args: str) -> None:
    """``relbench ARGS`` in this process (the same entry point as the console script)."""
    main(["relbench", *args])


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 4)) + 4.0 * y[:, None] * np.array([1.0, -1.0, 0.0, 0.0])
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    """``relbench train`` on .npz files with an OOD file, saving its predictions."""
    root = tmp_path_factory.mktemp("npz")
    for name, (n, seed) in {"train": (64, 0), "test": (32, 1)}.items():
        x, y = _blobs(n, seed)
        np.savez(root / f"{name}.npz", x=x, y=y)
    np.savez(root / "far.npz", x=np.random.default_rng(2).normal(8.0, 1.0, (24, 4)))
    workdir = root / "run"
    relbench(
        "train",
        "--config",
        str(USER_DATA / "arrays_mlp.py") + ":deterministic,smoke",
        f"--config.dataset.splits={{'train': '{root}/train.npz', 'test': '{root}/test.npz'}}",
        f"--config.dataset.ood={{'far': '{root}/far.npz'}}",
        "--config.optimizer.learning_rate=0.01",
        "--config.train.eval_batch_size=16",  # several batches, the last one padded
        "--config.evaluation.save_predictions=True",
        "--workdir",
        str(workdir),
    )
    return root, workdir


def test_npz_run_learns_and_equals_the_python_api(npz_run, tmp_path):
    root, workdir = npz_run
    results = json.loads((workdir / "results.json").read_text())
    assert results["test"]["accuracy"] >= 0.9  # separable blobs; chance is 0.5
    assert "auroc/entropy" in results["far"]

    def in_memory() -> data_lib.Dataset:  # the same arrays, built in Python
        def source(name):
            arrays = np.load(root / f"{name}.npz")
            return data_lib.ArraySource({"input": arrays["x"], "label": arrays["y"]})

        far = np.load(root / "far.npz")["x"].astype(np.float32)
        ood = data_lib.ArraySource({"input": far, "label": np.full(len(far), -1, np.int32)})
        return data_lib.Dataset(
            train=source("train"),
            eval_sets={
                "test": data_lib.EvalSet(source("test")),
                "far": data_lib.EvalSet(ood, True),
            },
            num_classes=2,
            input_shape=(4,),
        )

    data_lib.register("test_in_memory_blobs", in_memory)
    try:
        config = configs.load(str(USER_DATA / "arrays_mlp.py") + ":deterministic,smoke")
        with config.unlocked():
            config.dataset = configs.dataset_config("test_in_memory_blobs")
            config.optimizer.learning_rate = 0.01
            config.train.eval_batch_size = 16
        train_and_evaluate(config, tmp_path)
        assert (tmp_path / "results.json").read_bytes() == (workdir / "results.json").read_bytes()
    finally:
        data_lib.DATASETS.factories.pop("test_in_memory_blobs")


def test_evaluate_predictions_reproduces_the_runs_results_exactly(npz_run, tmp_path):
    _, workdir = npz_run
    saved = np.load(workdir / "predictions.npz")
    assert saved["test/logits"].shape == (1, 32, 2) and saved["far/is_ood"]
    out = tmp_path / "evaluated"
    relbench(
        "evaluate-predictions",
        str(workdir / "predictions.npz"),
        "--out",
        str(out),
        "--batch-size",
        "16",
    )  # fmt: skip  (the run's eval_batch_size)
    for name in ("results.json", "curves.json"):
        assert (out / name).read_bytes() == (workdir / name).read_bytes(), name
    # `relbench report` puts both in one report: a leaderboard per dataset and model.
    groups = group_runs([load_run(workdir), load_run(out)])
    assert {e: [r.label for r in rows] for e, rows in groups.items()} == {
        "arrays_mlp": ["deterministic"],
        "predictions_external": ["predictions"],
    }


def test_image_folder_and_csv_train_with_no_code(tmp_path):
    rng = np.random.default_rng(0)
    for label, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
        folder = tmp_path / "images" / f"class_{label}"
        folder.mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(rng.normal(colour, 20.0, (8, 8, 3)), 0, 255).astype(np.uint8)
            PIL.Image.fromarray(pixels).save(folder / f"{i}.png")
    relbench(
        "train",
        "--config",
        str(USER_DATA / "image_folder_cnn.py") + ":deterministic,smoke",
        f"--config.dataset.path={tmp_path}/images",
        "--config.dataset.fractions=(0.75, 0.0, 0.25)",
        "--config.model.features=(8,)",
        "--config.optimizer.learning_rate=0.05",
        "--config.train.num_epochs=4",
        "--config.train.data_threads=2",
        "--config.train.precise_batch_norm=False",  # one compile less
        "--workdir",
        str(tmp_path / "images_run"),
    )
    results = json.loads((tmp_path / "images_run" / "results.json").read_text())
    assert results["test"]["accuracy"] > 1 / 3  # colours; chance is 1/3
    assert (tmp_path / "images" / ".relbench_normalization.json").is_file()

    x = rng.normal(size=(120, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=120)
    rows = "\n".join(",".join(f"{v:.6f}" for v in (*r, t)) for r, t in zip(x, y, strict=True))
    (tmp_path / "uci.csv").write_text("a,b,c,y\n" + rows + "\n")
    relbench(
        "train",
        "--config",
        str(USER_DATA / "table_mlp.py") + ":deterministic,smoke",
        f"--config.dataset.path={tmp_path}/uci.csv",
        "--config.dataset.target=y",
        "--config.dataset.task=regression",
        "--config.dataset.split_seed=3",  # one of the UCI protocol's random splits
        "--config.optimizer.learning_rate=0.005",
        "--config.train.num_epochs=6",
        "--config.train.global_batch_size=32",
        "--workdir",
        str(tmp_path / "uci"),
    )
    results = json.loads((tmp_path / "uci" / "results.json").read_text())
    assert results["test"]["rmse"] < 0.5  # in target std units: the mean scores 1


def test_bad_file_is_one_error_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_code:
        relbench(
            "train",
            "--config",
            str(USER_DATA / "arrays_mlp.py") + ":deterministic,smoke",
            f"--config.dataset.path={tmp_path}/missing.npz",
            "--workdir",
            str(tmp_path / "run"),
        )
    assert exit_code.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"relbench: error: arrays file '{tmp_path}/missing.npz' does not exist; fix "
        "config.dataset.path"
    ]


def build_wheel(project: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """A pure-Python wheel of ``project`` (its pyproject.toml's name, version, packages
    and entry points): what ``pip wheel`` builds, written here because the test
    environment has no ``wheel`` package for setuptools' ``bdist_wheel``."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    name, version = meta["project"]["name"], meta["project"]["version"]
    stem = f"{name.replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
        for group, points in meta["project"]["entry-points"].items()
    )
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": entry_points,
    }
    for package in meta["tool"]["setuptools"]["packages"]:
        for path in sorted((project / package).rglob("*.py")):
            files[str(path.relative_to(project))] = path.read_text()
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{info}/RECORD"])
    wheel = out / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return wheel


def test_pip_installed_plugin_is_found_by_relbench_train(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(build_wheel(PLUGIN, tmp_path)),
        ],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=120,
    )
    config_file = tmp_path / "plugin_config.py"
    config_file.write_text(
        textwrap.dedent(
            """
            from relbench.configs.recipes import user_files_config

            def get_config(arg=None):
                return user_files_config("demo_blobs", {"name": "mlp", "hidden_sizes": (16,)}, arg)
            """
        )
    )
    # One CPU device: the plugin is what this run tests, not sharding (cheaper compiles).
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{target}", "JAX_NUM_CPU_DEVICES": "1"}

    # The names the "choose one of" errors list come from the installed entry points.
    sys.path.insert(0, str(target))
    try:
        assert "demo_tempered" in Registry("method", {}, entry_points="relbench.methods").names()
        assert "demo_blobs" in Registry("dataset", {}, entry_points="relbench.datasets").names()
    finally:
        sys.path.remove(str(target))
    command = [sys.executable, "-m", "relbench", "train", "--config"]
    command += [f"{config_file}:demo_tempered,smoke", "--config.dataset.num_examples=128"]
    command += ["--config.optimizer.learning_rate=0.03", "--workdir", str(tmp_path / "run")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["dataset"]["name"], config["method"]["name"]) == ("demo_blobs", "demo_tempered")
    assert config["method"]["temperature"] == 2.0  # the plugin's hyperparameter, in the config
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test"]["accuracy"] > 0.8  # blobs 4 apart; chance is 1/3

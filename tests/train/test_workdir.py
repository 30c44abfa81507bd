"""A workdir holds one run: bad input through ``relbench train`` is one error line, exit
status 2, and nothing in the workdir changes; changed evaluation settings re-evaluate a
finished run and keep its previous results."""

import hashlib
import json
import pathlib
import shutil

import pytest

from relbench.cli.main import main
from relbench.train import workdir as workdir_lib

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
MLP = f"{EXPERIMENTS / 'digits_mlp.py'}:smoke"
SHORT = ["--config.train.num_epochs=0.1"]  # 4 steps of 32


def train(capsys, *args: str) -> tuple[int, str]:
    """``relbench train ARGS`` in this process -> (exit status, stderr)."""
    capsys.readouterr()
    try:
        main(["relbench", "train", *args])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def snapshot(directory: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished")
    main(["relbench", "train", "--config", MLP, *SHORT, "--workdir", str(workdir)])
    return workdir


@pytest.fixture
def run_copy(finished, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    return workdir


def refused(capsys, workdir, *args: str) -> str:
    before = snapshot(workdir)
    status, err = train(capsys, *args, "--workdir", str(workdir))
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert snapshot(workdir) == before  # nothing written, nothing overwritten
    return err


def test_a_workdir_of_another_config_is_refused(run_copy, capsys):
    cnn = f"{EXPERIMENTS / 'digits_cnn.py'}:smoke"
    err = refused(capsys, run_copy, "--config", cnn, *SHORT)
    assert 'holds a run of another config: config.model.name is "mlp" there' in err
    assert "new --workdir" in err


def test_a_changed_hyperparameter_of_a_finished_run_is_refused(run_copy, capsys):
    err = refused(capsys, run_copy, "--config", MLP, *SHORT, "--config.optimizer.momentum=0.5")
    assert "config.optimizer.momentum is 0.9 there, 0.5 here" in err


def test_an_unknown_dataset_keyword_on_the_command_line_is_refused(run_copy, capsys):
    err = refused(capsys, run_copy, "--config", MLP, *SHORT, "--config.dataset.num_odd=3")
    assert "unknown key config.dataset.num_odd" in err


def test_an_unknown_dataset_key_in_a_config_file_is_refused(run_copy, tmp_path, capsys):
    config_file = tmp_path / "bad_digits.py"
    config_file.write_text(
        "from experiments import digits_mlp\n\n\n"
        "def get_config(arg=None):\n"
        "    config = digits_mlp.get_config(arg)\n"
        "    with config.unlocked():\n"
        "        config.dataset.num_odd = 3\n"
        "    return config\n"
    )
    err = refused(capsys, run_copy, "--config", f"{config_file}:smoke", *SHORT)
    assert "unknown key config.dataset.num_odd for dataset 'digits'" in err


def test_changed_evaluation_settings_reevaluate_and_keep_the_previous_results(run_copy, capsys):
    previous = {n: (run_copy / n).read_bytes() for n in workdir_lib.VERSIONED_FILES}
    checkpoints = snapshot(run_copy / "checkpoints")
    status, err = train(
        capsys, "--config", MLP, *SHORT, "--config.evaluation.severities=(1,)",
        "--workdir", str(run_copy),
    )  # fmt: skip
    assert status == 0, err
    for name, content in previous.items():
        kept = run_copy / f"{pathlib.Path(name).stem}.1.json"
        assert kept.read_bytes() == content, name
    old, new = (json.loads((run_copy / n).read_text()) for n in ("results.1.json", "results.json"))
    assert "digits_c/contrast/5" in old and "digits_c/contrast/5" not in new
    assert new["test"] == old["test"]  # the same parameters, evaluated again
    assert snapshot(run_copy / "checkpoints") == checkpoints  # training was not redone

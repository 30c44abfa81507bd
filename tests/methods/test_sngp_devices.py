"""sngp's precision reduces over the global batch: 4 devices give what 1 device gives."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np

from tests.methods.sngp_runs import final_state, precision, tiny_moons_config

HERE = pathlib.Path(__file__).resolve().parent

# Two epochs of real training (SGD, learning rate 0.05): the parameters, and with them
# the features, move, so only float noise of different reduction orders may differ.
LEARNING_RATE = 0.05
RTOL, ATOL = 1e-4, 1e-5


def save_precision(workdir: str, devices: int) -> None:
    """Run in a subprocess with JAX_NUM_CPU_DEVICES set: train, save the precision."""
    assert jax.device_count() == devices
    _, state = final_state(tiny_moons_config(LEARNING_RATE), pathlib.Path(workdir))
    np.save(pathlib.Path(workdir) / "precision.npy", precision(state))


def test_precision_on_four_devices_equals_one_device(tmp_path):
    assert jax.device_count() == 4  # tests/conftest.py
    _, state = final_state(tiny_moons_config(LEARNING_RATE), tmp_path / "four")
    four = precision(state)

    one_dir = tmp_path / "one"
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "1", "JAX_PLATFORMS": "cpu"}
    code = (
        f"import sys; sys.path.insert(0, {json.dumps(str(HERE))}); "
        f"import test_sngp_devices as t; t.save_precision({json.dumps(str(one_dir))}, 1)"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=HERE.parents[1])
    one = np.load(one_dir / "precision.npy")

    ridge_only = np.eye(len(one))  # the update did happen: far from the initial ridge * I
    assert np.abs(one - ridge_only).max() > 1.0
    np.testing.assert_allclose(four, one, rtol=RTOL, atol=ATOL)

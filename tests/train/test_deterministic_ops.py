"""config.train.deterministic_ops: XLA's GPU flag, and the warning for max-pool gradients."""

import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from relbench import models
from relbench.errors import UsageError
from relbench.train import determinism

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _env_without_xla_flags() -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**kept, "PYTHONPATH": str(ROOT)}


def test_flag_is_set_before_the_backend_starts():
    code = (
        "import os; from relbench.train import determinism; "
        "determinism.configure(True); import jax; jax.devices(); "
        "print(os.environ['XLA_FLAGS'])"
    )
    env = _env_without_xla_flags()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "--xla_gpu_deterministic_ops=true"


def test_after_the_backend_started_cpu_needs_nothing(monkeypatch):
    jax.devices()
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    determinism.configure(True)  # CPU is deterministic: no error, nothing set
    assert "XLA_FLAGS" not in os.environ
    determinism.configure(False)


def test_contradicting_xla_flags_are_a_usage_error(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")
    with pytest.raises(UsageError, match="remove one of them"):
        determinism.configure(True)


def test_max_pool_gradient_is_found_and_warned():
    x = jnp.ones((2, 8, 8, 3))

    def pooled(x):
        return jnp.sum(nn.max_pool(x, (2, 2), strides=(2, 2)) ** 2)

    assert set(determinism.nondeterministic_ops(jax.grad(pooled), x)) == {"select_and_scatter_add"}
    assert determinism.nondeterministic_ops(jax.grad(lambda x: jnp.sum(x**2)), x) == {}
    with pytest.warns(RuntimeWarning, match="max-pooling"):
        determinism.warn_nondeterministic(jax.jit(jax.grad(pooled)), x)


def test_the_cnn_train_gradient_contains_a_max_pool_gradient():
    model = models.make(name="cnn", num_classes=3, features=(4,), hidden_size=8)
    x = jnp.ones((2, 8, 8, 1))
    variables = model.init(jax.random.key(0), x, train=False)

    def loss(params):
        logits, _ = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )[0]
        return jnp.sum(logits)

    assert "select_and_scatter_add" in determinism.nondeterministic_ops(
        jax.grad(loss), variables["params"]
    )


def test_relbench_train_sets_the_flag_before_jax_starts(tmp_path):
    # If anything on the CLI path started JAX's backend first, configure() could no
    # longer set the flag (on CPU it then sets nothing), and XLA_FLAGS would be unset.
    code = (
        "import os, sys; from relbench import cli; "
        "cli.main(['relbench', 'train', '--config', sys.argv[1], "
        "'--config.train.deterministic_ops=True', '--config.train.num_epochs=0.05', "
        "'--workdir', sys.argv[2]]); print(os.environ.get('XLA_FLAGS'))"
    )
    config = f"{ROOT}/experiments/digits_mlp.py:smoke"
    env = _env_without_xla_flags()
    done = subprocess.run(
        [sys.executable, "-c", code, config, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "--xla_gpu_deterministic_ops=true"

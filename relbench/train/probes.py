"""Runs a dataset's probes after training: predict on fixed inputs, let the probe write.

Every process takes part in the (sharded) prediction, so the same code runs on one CPU
and on a multi-host slice; the outputs are replicated, and only process 0 writes. The
predictions are the run's final ones: after its post-hoc steps, where it has any.
"""

from __future__ import annotations

import pathlib
import zlib

import jax
import numpy as np

from relbench import data as data_lib
from relbench.metrics.predictive import predictive_probs
from relbench.posthoc import apply_all
from relbench.train import sharding


def predict_arrays(
    exp, state, inputs: np.ndarray, key: jax.Array, mesh, fitted=None
) -> tuple[np.ndarray, dict]:
    """The predictive distribution ``[N, K]`` and extras ``[M, N, ...]`` on ``inputs``."""
    batch_sharding = sharding.batch_sharded(mesh)

    @jax.jit
    def predict(state, batch_inputs, batch_key, fitted):
        outputs = exp.method.predict_fn(exp.model.apply, state, batch_inputs, batch_key)
        if fitted is not None:
            outputs = apply_all([entry.step for entry in exp.posthoc], outputs, fitted)
        logits, extras = outputs
        outputs = (predictive_probs(logits), extras)
        return jax.lax.with_sharding_constraint(outputs, sharding.replicated(mesh))

    source = data_lib.ArraySource({"input": inputs, "label": np.zeros(len(inputs), np.int32)})
    batches = data_lib.eval_batches(
        source,
        exp.settings.eval_batch_size,
        None,
        jax.process_index(),
        jax.process_count(),
    )
    probs, extras = [], []
    for index, local in enumerate(batches):
        batch = sharding.global_batch({"input": local["input"]}, batch_sharding)
        batch_key = jax.random.fold_in(key, index)
        p, e = jax.device_get(predict(state, batch["input"], batch_key, fitted))
        probs.append(p)
        extras.append(e)
    n = len(inputs)  # the padding rows of the last batch come last: cut them off.
    out_extras = {
        name: np.concatenate([e[name] for e in extras], axis=1)[:, :n] for name in extras[0]
    }
    return np.concatenate(probs)[:n], out_extras


def run_probes(exp, state, key, mesh, workdir: pathlib.Path, is_writer: bool, fitted=None):
    """Predicts on every probe of the dataset; process 0 lets each one write."""
    for probe in exp.dataset.probes:
        probe_key = jax.random.fold_in(key, zlib.crc32(f"probe:{probe.name}".encode()))
        probs, extras = predict_arrays(exp, state, probe.inputs, probe_key, mesh, fitted)
        if is_writer:
            probe.write(probs, extras, workdir)

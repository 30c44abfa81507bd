"""Steady-state step time of the relbench loop vs a minimal hand-written jit+optax step.

Both train the same MLP (relbench's ``MLP`` module) with the same SGD optimizer on the
same digits batches. The relbench step time is what a run of ``train_and_evaluate`` logs as
``train/steps_per_second`` in ``metrics.jsonl`` (wall time between log events, the
first interval, with compilation, excluded): the per-step cost of the loop as users
run it (data pipeline, sharding, jit dispatch, logging). The baseline slices
pre-permuted numpy arrays, ``device_put``s each batch and calls a jitted step, timed
over the same number of steps after compilation. Runs alternate (relbench, baseline,
...) and the medians are compared.

    .venv/bin/python benchmarks/loop_overhead.py [--hidden 1024 --batch 512]
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import statistics
import tempfile
import time

import jax
import numpy as np
import optax
from absl import logging

from relbench import configs, data
from relbench.models import MLP
from relbench.train.loop import (
    build,
    init_state,
    make_train_step,
    summing_metrics,
    train_and_evaluate,
)

REPO = pathlib.Path(__file__).resolve().parents[1]


def relbench_config(hidden: int, batch: int, steps: int, log_every: int):
    config = configs.load(str(REPO / "experiments/digits_mlp.py"))
    with config.unlocked():
        config.model.hidden_sizes = (hidden, hidden)
        config.train.global_batch_size = batch
        config.train.num_epochs = (steps + log_every) * batch / 1258
        config.train.checkpoint_every_steps = 10**9  # only the final save
        config.train.log_every_steps = log_every
    return config


def timed_run(config) -> tuple[dict, float]:
    """``train_and_evaluate`` in a temporary workdir: its results and the median of the
    ``train/steps_per_second`` it logged (the first interval, with compiling, excluded)."""
    with tempfile.TemporaryDirectory() as workdir:
        results = train_and_evaluate(config, workdir)
        lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(line).get("train/steps_per_second") for line in lines]
    rates = [r for r in rates if r is not None][1:]  # the first interval includes compiling
    return results, statistics.median(rates)


def relbench_step_seconds(hidden: int, batch: int, steps: int, log_every: int) -> float:
    _, steps_per_second = timed_run(relbench_config(hidden, batch, steps, log_every))
    return 1.0 / steps_per_second


def hand_written_step(hidden: int):
    """The hand-written jitted step, its initial state, and the digits arrays."""
    train = data.make("digits").train
    arrays = train.read(np.arange(len(train)))
    model = MLP(num_classes=10, hidden_sizes=(hidden, hidden))
    tx = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.05, momentum=0.9, nesterov=True))
    params = model.init(jax.random.key(0), arrays["input"][:1], train=False)["params"]

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits, _ = model.apply({"params": p}, x, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits[0], y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step, (params, tx.init(params)), arrays


def baseline_seconds(hidden: int, batch: int, steps: int) -> float:
    """A minimal hand-written loop: numpy batches, device_put, one jitted step."""
    step, (params, opt_state), arrays = hand_written_step(hidden)
    n = len(arrays["label"])
    rng = np.random.default_rng(0)
    order = np.concatenate([rng.permutation(n) for _ in range(steps * batch // n + 2)])
    x0, y0 = arrays["input"][order[:batch]], arrays["label"][order[:batch]]
    params, opt_state, loss = step(params, opt_state, x0, y0)  # compile outside the timing
    loss.block_until_ready()
    start = time.perf_counter()
    for i in range(steps):
        rows = order[i * batch : (i + 1) * batch]
        x, y = jax.device_put(arrays["input"][rows]), jax.device_put(arrays["label"][rows])
        params, opt_state, loss = step(params, opt_state, x, y)
    loss.block_until_ready()
    return time.perf_counter() - start


def steps_on_one_batch(hidden: int, batch: int, steps: int) -> tuple[float, float]:
    """Seconds per step of each jitted step alone, called back to back on one
    device-resident batch: what the steps' own programs cost, without any loop."""
    exp = build(relbench_config(hidden, batch, steps, 100))
    summing_step, zero_sums = summing_metrics(make_train_step(exp))
    ours = jax.jit(summing_step, donate_argnums=(0, 1))
    key = jax.random.key(0)
    state = jax.jit(functools.partial(init_state, exp))(key)
    local = exp.dataset.train.read(np.arange(batch))
    device_batch = jax.device_put(local)
    sums = jax.jit(zero_sums)(state, device_batch, key)
    theirs, (params, opt_state), _ = hand_written_step(hidden)
    x, y = device_batch["input"], device_batch["label"]
    state, sums = ours(state, sums, device_batch, key)  # compile outside the timing
    params, opt_state, loss = theirs(params, opt_state, x, y)
    jax.block_until_ready((sums, loss))
    start = time.perf_counter()
    for _ in range(steps):
        state, sums = ours(state, sums, device_batch, key)
    jax.block_until_ready(sums)
    middle = time.perf_counter()
    for _ in range(steps):
        params, opt_state, loss = theirs(params, opt_state, x, y)
    loss.block_until_ready()
    return (middle - start) / steps, (time.perf_counter() - middle) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    ours, theirs, alone = [], [], []
    for _ in range(args.repeats):
        ours.append(relbench_step_seconds(args.hidden, args.batch, args.steps, args.log_every))
        theirs.append(baseline_seconds(args.hidden, args.batch, args.steps) / args.steps)
        alone.append(steps_on_one_batch(args.hidden, args.batch, args.steps))
    ours_ms, theirs_ms = 1e3 * statistics.median(ours), 1e3 * statistics.median(theirs)
    alone_ours_ms = 1e3 * statistics.median(a for a, _ in alone)
    alone_theirs_ms = 1e3 * statistics.median(b for _, b in alone)
    print(
        f"devices={jax.device_count()} MLP hidden=({args.hidden}, {args.hidden}) batch={args.batch}"
    )
    print(f"relbench loop step:   {ours_ms:.3f} ms (median of {args.repeats})")
    print(f"hand-written step:    {theirs_ms:.3f} ms (median of {args.repeats})")
    print(f"ratio relbench/hand-written: {ours_ms / theirs_ms:.3f}  (target <= 1.05)")
    print(
        f"  of which the step programs alone (one device batch, no loop): relbench "
        f"{alone_ours_ms:.3f} ms, hand-written {alone_theirs_ms:.3f} ms, ratio "
        f"{alone_ours_ms / alone_theirs_ms:.3f} (relbench's step also derives keys, follows "
        "the lr schedule, masks weight decay to kernels and computes accuracy)"
    )
    print(
        f"  loop machinery alone, (loop / step program) relbench over hand-written: "
        f"{(ours_ms / alone_ours_ms) / (theirs_ms / alone_theirs_ms):.3f}"
    )


if __name__ == "__main__":
    main()

"""Steady-state step time of 2 processes x 2 CPU devices vs 1 process x 4 CPU devices.

Both train ``experiments/digits_mlp.py`` (same global batch, same 4-way data
sharding); the only difference is that the 2-process run goes through JAX's
multi-process runtime (``relbench launch``, gloo collectives between the processes).
A step's time is what each run logs as ``train/steps_per_second`` in
``metrics.jsonl`` (the first interval, with compilation, excluded). Runs alternate
(1x4, 2x2, ...) and the medians are compared: the ratio is the price of crossing
processes, on one machine.

    .venv/bin/python benchmarks/multiprocess_overhead.py [--steps 200 --repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]


def step_seconds(processes: int, devices: int, steps: int, workdir: pathlib.Path) -> float:
    """The median logged step time of one run (after the first, compiling interval)."""
    train = [
        f"--config={REPO}/experiments/digits_mlp.py",
        f"--workdir={workdir}",
        "--config.train.global_batch_size=64",
        f"--config.train.num_epochs={steps * 64 / 1258}",  # digits' train split: 1258
        "--config.train.log_every_steps=20",
        "--config.train.checkpoint_every_steps=100000",
    ]
    if processes == 1:
        argv = [sys.executable, "-m", "relbench", "train", *train]
    else:
        argv = [
            sys.executable, "-m", "relbench", "launch", f"--processes={processes}",
            f"--devices-per-process={devices}", "--", *train,
        ]  # fmt: skip
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": str(devices),
        "PYTHONPATH": str(REPO),
    }
    subprocess.run(argv, env=env, check=True, capture_output=True)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["train/steps_per_second"] for r in records if "train/steps_per_second" in r]
    return statistics.median(1.0 / rate for rate in rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"1x4": [], "2x2": []}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            for name, processes, devices in (("1x4", 1, 4), ("2x2", 2, 2)):
                workdir = pathlib.Path(root) / f"{name}_{repeat}"
                times[name].append(step_seconds(processes, devices, args.steps, workdir))
    one, two = statistics.median(times["1x4"]), statistics.median(times["2x2"])
    for name, label in (("1x4", "1 process x 4 devices:  "), ("2x2", "2 processes x 2 devices:")):
        runs = ", ".join(f"{t * 1e3:.2f}" for t in times[name])
        print(f"step time, {label} {statistics.median(times[name]) * 1e3:.2f} ms (runs: {runs})")
    print(f"ratio 2x2 / 1x4: {two / one:.2f}")


if __name__ == "__main__":
    main()

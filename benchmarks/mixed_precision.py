"""bfloat16 against float32 training: test accuracy, NLL, ECE and step time, per model.

    python -m benchmarks.mixed_precision [--seeds 0 1] [--method deterministic]

Each model trains on the digits (``experiments/digits_cnn.py``'s recipe: 10 epochs of
Adam, precise batch norm) once with ``config.train.compute_dtype=float32`` and once
with ``bfloat16``, per seed, and the test metrics are printed side by side with the
ratio of the logged steps per second (compilation excluded). Models: the digits CNN
(``digits_cnn.py``'s widths) and WRN-tiny, the wide ResNet of the WRN configs' smoke
size (depth 10, width 1). Target: bfloat16 within 1 accuracy point of float32. On a
CPU bfloat16 is emulated and not faster; the speed of bfloat16 is an accelerator's.
"""

from __future__ import annotations

import argparse
import pathlib

import ml_collections

from benchmarks.loop_overhead import timed_run
from relbench import configs

REPO = pathlib.Path(__file__).resolve().parents[1]
MODELS = {
    "digits CNN": {"name": "cnn", "features": (32, 64), "hidden_size": 128},
    "WRN-tiny": {"name": "wide_resnet", "depth": 10, "width_multiplier": 1},
}


def run(model: dict, method: str, dtype: str, seed: int) -> dict:
    config = configs.load(f"{REPO / 'experiments/digits_cnn.py'}:{method}")
    with config.unlocked():
        config.seed = seed
        config.model = ml_collections.ConfigDict(model)
        config.train.compute_dtype = dtype
        config.train.checkpoint_every_steps = 10**9  # only the final save
        config.evaluation.shift_suite = ""
    results, steps_per_second = timed_run(config)
    test = results["test"]
    return {
        "steps_per_second": steps_per_second,
        **{k: test[k] for k in ("accuracy", "nll", "ece")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--method", default="deterministic")
    args = parser.parse_args()
    print(
        f"{'model':12s} {'seed':>4s} {'acc f32':>8s} {'acc bf16':>8s} {'nll f32':>8s} "
        f"{'nll bf16':>8s} {'ece f32':>8s} {'ece bf16':>8s} {'bf16/f32 step time':>19s}"
    )
    for name, model in MODELS.items():
        for seed in args.seeds:
            f32, bf16 = (run(model, args.method, d, seed) for d in ("float32", "bfloat16"))
            print(
                f"{name:12s} {seed:4d} {f32['accuracy']:8.4f} {bf16['accuracy']:8.4f} "
                f"{f32['nll']:8.4f} {bf16['nll']:8.4f} {f32['ece']:8.4f} {bf16['ece']:8.4f} "
                f"{f32['steps_per_second'] / bf16['steps_per_second']:19.2f}"
            )


if __name__ == "__main__":
    main()

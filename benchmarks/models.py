"""Train-step throughput of the CIFAR backbones per method, against the input pipeline.

For each model (WRN and ResNet-20) and each method, this times the loop's own jitted,
sharded train step (``relbench.train.loop.make_train_step``) in steady state and
reports examples/s. Side by side, in the same process, it times the loop's own input
pipeline (``train_iterator`` over ``TrainBatches`` with CIFAR-10's crop+flip on
``--data-threads`` grain threads, then ``sharding.global_batch``) and reports

    pipeline examples/s / train-step examples/s      (target >= 3)

so that the pipeline is never the bottleneck. The pipeline reads the training split as
the CIFAR recipe does (``config.dataset.in_memory``: decoded and normalized once); the
``decode/step`` column is the same ratio for a pipeline that decodes PNG records on
every read, as ``tfds.data_source`` does without TensorFlow (the records are
``tfds.testing.mock_data`` examples stored PNG-encoded; mock records themselves are
generated at random on every read, which would time the mock).

On a GPU it also reports model FLOPs utilisation: the train step's FLOPs (XLA's cost
analysis of the step lowered for the CPU, see ``step_flops``) per second over the
device's dense peak for the step's precision (fp32 matmuls run as TF32 on NVIDIA
tensor cores by default).

    python benchmarks/models.py                      # CPU: tiny/small WRN, ResNet-20
    python benchmarks/models.py --models wrn28_10,resnet20 --batch 512   # a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import time

import jax
import numpy as np
import PIL.Image

from relbench import data, methods, models
from relbench.data.tfds import load_in_memory
from relbench.methods import likelihoods
from relbench.train import optimizers, sharding
from relbench.train.loop import Experiment, LoopSettings, init_state, make_train_step

ARCHITECTURES = {
    "wrn_tiny": ("wide_resnet", {"depth": 10, "width_multiplier": 1}),
    "wrn_small": ("wide_resnet", {"depth": 16, "width_multiplier": 2}),
    "wrn28_10": ("wide_resnet", {"depth": 28, "width_multiplier": 10}),
    "resnet20": ("resnet_cifar", {"depth": 20}),
}
METHODS = ("deterministic", "mc_dropout", "sngp", "batchensemble")

#: Dense TF32 tensor-core peak (FLOP/s) by device kind, for fp32 training.
PEAK_FLOPS = {"H100": 494.7e12, "H200": 494.7e12, "A100": 156e12}


def experiment(arch: str, method_name: str, dataset: data.Dataset, batch: int) -> Experiment:
    """The loop's experiment (``relbench.train.loop.build``) for one backbone and method."""
    name, kwargs = ARCHITECTURES[arch]
    likelihood = likelihoods.for_task(dataset.task)
    method = methods.make(method_name, likelihood=likelihood)
    layers = method.layers(models.default_layers(name))
    model = models.make(name, num_classes=dataset.num_classes, **kwargs, layers=layers)
    total_steps = 10_000
    optimizer = method.optimizer(
        optimizers.make(
            total_steps=total_steps,
            decay_mask=method.decay_mask,
            learning_rate=0.1,
            weight_decay=5e-4,
        ),
        total_steps,
    )
    settings = LoopSettings(global_batch_size=batch)
    return Experiment(dataset, likelihood, method, model, optimizer, settings, total_steps, 0)


def step_flops(exp: Experiment, *args) -> float:
    """FLOPs of the train step on ``args``: XLA's cost analysis of the step lowered for
    the CPU, whose HLO counts every convolution and matmul (the compiled GPU program
    hides convolutions in cuDNN calls, and GPU lowerings offer no analysis)."""
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
    with jax.default_device(jax.devices("cpu")[0]):
        lowered = jax.jit(make_train_step(exp)).lower(*abstract)
    return float((lowered.cost_analysis() or {}).get("flops", float("nan")))


def time_train_step(exp: Experiment, batches: data.TrainBatches, steps: int):
    """Seconds per steady-state step and the step's FLOPs."""
    mesh = sharding.data_mesh()
    replicated, batch_sharding = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    init_key, train_key = jax.random.split(jax.random.key(0))
    state = jax.jit(lambda k: init_state(exp, k), out_shardings=replicated)(init_key)
    step = jax.jit(
        make_train_step(exp),
        in_shardings=(replicated, batch_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    inputs = [sharding.global_batch(batches(i), batch_sharding) for i in range(2)]
    flops = step_flops(exp, state, inputs[0], train_key)
    for i in range(2):  # compile and warm up
        state, metrics = step(state, inputs[i % 2], train_key)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for i in range(steps):
        state, metrics = step(state, inputs[i % 2], train_key)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / steps, flops


class PngRecords:
    """Records as a prepared TFDS split holds them: PNG bytes, decoded on each read."""

    def __init__(self, records, num_examples: int):
        rows = records.__getitems__(list(range(num_examples)))
        self.labels = [int(r["label"]) for r in rows]
        self.images = []
        for r in rows:
            buffer = io.BytesIO()
            PIL.Image.fromarray(np.asarray(r["image"])).save(buffer, format="PNG")
            self.images.append(buffer.getvalue())

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, keys):
        return [
            {
                "image": np.asarray(PIL.Image.open(io.BytesIO(self.images[k]))),
                "label": self.labels[k],
            }
            for k in keys
        ]


def time_pipeline(batches: data.TrainBatches, steps: int, threads: int) -> float:
    """Seconds per global batch of the loop's input pipeline (read, decode, augment,
    shard) on ``threads`` grain threads."""
    batch_sharding = sharding.batch_sharded(sharding.data_mesh())
    iterator = data.train_iterator(batches, steps + threads + 1, threads)
    for _ in range(threads + 1):  # start the threads and fill their buffer
        jax.block_until_ready(sharding.global_batch(next(iterator), batch_sharding))
    start = time.perf_counter()
    for local in itertools.islice(iterator, steps):
        out = sharding.global_batch(local, batch_sharding)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="wrn_tiny,wrn_small,resnet20")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--data-threads", type=int, default=8, help="the CIFAR recipe's config.train.data_threads"
    )
    args = parser.parse_args()

    num_examples = max(1024, 4 * args.batch)
    dataset = data.make("cifar10", mock_num_examples=num_examples)
    per_read = dataclasses.replace(
        dataset.train, records=PngRecords(dataset.train.records, num_examples)
    )
    batches = {  # the recipe's in-memory split, and decoding PNGs on every read
        name: data.TrainBatches(
            source, args.batch, 0, dataset.num_classes, augment=dataset.train_augment
        )
        for name, source in (("in_memory", load_in_memory(per_read)), ("decode", per_read))
    }
    rates = {  # pipeline examples/s
        name: args.batch / time_pipeline(b, max(args.steps, 20), args.data_threads)
        for name, b in batches.items()
    }
    device = jax.devices()[0]
    peak = next((p for k, p in PEAK_FLOPS.items() if k in device.device_kind), None)
    print(
        f"{jax.device_count()} x {device.device_kind} ({jax.default_backend()}); global batch "
        f"{args.batch}; input pipeline on {args.data_threads} grain threads (crop/flip): "
        f"{rates['in_memory']:,.0f} examples/s from the in-memory split (the recipe's), "
        f"{rates['decode']:,.0f} decoding PNGs per read"
    )
    header = f"{'model':10s} {'method':14s} {'examples/s':>11s} {'pipeline/step':>14s}"
    print(header + f" {'decode/step':>12s}" + (f" {'TFLOP/s':>8s} {'MFU':>6s}" if peak else ""))
    available = [m for m in args.methods.split(",") if m in methods.METHODS.names()]
    for arch in args.models.split(","):
        for method_name in available:
            exp = experiment(arch, method_name, dataset, args.batch)
            seconds, flops = time_train_step(exp, batches["in_memory"], args.steps)
            rate = args.batch / seconds
            line = (
                f"{arch:10s} {method_name:14s} {rate:11,.0f} "
                f"{rates['in_memory'] / rate:14.1f} {rates['decode'] / rate:12.1f}"
            )
            if peak:
                line += f" {flops / seconds / 1e12:8.1f} {flops / seconds / peak:6.1%}"
            print(line, flush=True)
    skipped = sorted(set(args.methods.split(",")) - set(available))
    if skipped:
        print(f"(unknown methods skipped: {', '.join(skipped)})")


if __name__ == "__main__":
    main()

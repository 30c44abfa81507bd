"""Train-step throughput of the CIFAR and ImageNet backbones per method, against the input pipeline.

For each model (WRN and ResNet-20 on CIFAR-10's shapes, ResNet-50 on ImageNet's) and
each method, this times the loop's own jitted, sharded train step
(``relbench.train.loop.make_train_step``) in steady state and reports examples/s. Side
by side, in the same process, it times the loop's own input pipeline for that model's
dataset (``train_iterator`` over ``TrainBatches`` with the dataset's augmentation on
``--data-threads`` grain threads, then ``sharding.global_batch``) and reports

    pipeline examples/s / train-step examples/s      (target >= 3)

so that the pipeline is never the bottleneck. The pipeline reads the training split as
the dataset's recipe does: CIFAR-10's decoded and normalized once
(``config.dataset.in_memory``), crop+flip; ImageNet's JPEG records decoded on every
read, Inception crop to 224. The ``decode/step`` column is the same ratio for a
pipeline that decodes every record on every read, as ``tfds.data_source`` does
without TensorFlow (the ImageNet recipe's own). The records are
``tfds.testing.mock_data`` examples stored encoded (PNG for CIFAR; JPEG for ImageNet,
resized to its typical 500x375 first: mock images are a few pixels wide); mock
records themselves are generated at random on every read, which would time the mock.

On a GPU it also reports model FLOPs utilisation: the train step's FLOPs (XLA's cost
analysis of the step lowered for the CPU, see ``step_flops``) per second over the
device's dense peak for the step's precision (``--compute-dtype``, the loop's
``config.train.compute_dtype``: fp32 matmuls run as TF32 on NVIDIA tensor cores by
default; bfloat16 against the bf16 peak). Where both ``deterministic`` and
``batchensemble`` ran on a model it prints BatchEnsemble's examples/s over a quarter
(1/M) of deterministic's: M members for the price of M networks is 1, target >= 0.9.

    python benchmarks/models.py                      # CPU: tiny/small WRN, ResNet-20
    python benchmarks/models.py --models wrn28_10,resnet20 --batch 512   # a GPU
    python benchmarks/models.py --models wrn28_10,resnet50 --batch 512 --compute-dtype bfloat16
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import time

import jax
import ml_collections
import numpy as np
import PIL.Image

from relbench import data, methods
from relbench.data.tfds import load_in_memory
from relbench.layers import mixed_precision
from relbench.methods import likelihoods
from relbench.train import optimizers, sharding
from relbench.train.loop import (
    Experiment,
    LoopSettings,
    build_model,
    init_state,
    make_train_step,
)

#: name -> (model, its fields, the dataset whose shapes and pipeline it trains on).
ARCHITECTURES = {
    "wrn_tiny": ("wide_resnet", {"depth": 10, "width_multiplier": 1}, "cifar10"),
    "wrn_small": ("wide_resnet", {"depth": 16, "width_multiplier": 2}, "cifar10"),
    "wrn28_10": ("wide_resnet", {"depth": 28, "width_multiplier": 10}, "cifar10"),
    "resnet20": ("resnet_cifar", {"depth": 20}, "cifar10"),
    "resnet50": ("resnet", {"stage_sizes": (3, 4, 6, 3)}, "imagenet2012"),
}
#: How each dataset's recipe reads it: its mock records' image format, the size they
#: are resized to (None: as generated), and whether the split is held decoded in memory.
RECIPE_READS = {"cifar10": ("PNG", None, True), "imagenet2012": ("JPEG", (500, 375), False)}
METHODS = ("deterministic", "mc_dropout", "sngp", "batchensemble")

#: Dense tensor-core peak (FLOP/s) by compute dtype and device kind (NVIDIA's data
#: sheets, SXM parts): TF32 for float32 training, BF16 for bfloat16.
PEAK_FLOPS = {
    "float32": {"H100": 494.7e12, "H200": 494.7e12, "A100": 156e12},
    "bfloat16": {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12},
}


def experiment(
    arch: str, method_name: str, dataset: data.Dataset, batch: int, compute_dtype: str
) -> Experiment:
    """The loop's experiment (``relbench.train.loop.build``) for one backbone and method."""
    name, kwargs, _ = ARCHITECTURES[arch]
    likelihood = likelihoods.for_task(dataset.task)
    method = methods.make(method_name, likelihood=likelihood)
    model_config = ml_collections.ConfigDict({"name": name, **kwargs})
    model = build_model(model_config, method, dataset.num_classes, compute_dtype)
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
    settings = LoopSettings(global_batch_size=batch, compute_dtype=compute_dtype)
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


class EncodedRecords:
    """Records as a prepared TFDS split holds them: encoded bytes (``image_format``,
    PNG or JPEG; resized to ``size``, ``(width, height)``, first unless None), decoded
    on each read."""

    def __init__(self, records, num_examples: int, image_format: str, size=None):
        rows = records.__getitems__(list(range(num_examples)))
        self.labels = [int(r["label"]) for r in rows]
        self.images = []
        for r in rows:
            image, buffer = PIL.Image.fromarray(np.asarray(r["image"])), io.BytesIO()
            (image if size is None else image.resize(size)).save(buffer, format=image_format)
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


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A dataset's training batches as its recipe reads them, and the examples/s of
    that pipeline and of one that decodes every record on every read."""

    dataset: data.Dataset
    batches: data.TrainBatches
    recipe_rate: float
    decode_rate: float

    @classmethod
    def measure(cls, name: str, batch: int, steps: int, threads: int) -> Pipeline:
        num_examples = max(1024, 4 * batch)
        dataset = data.make(name, mock_num_examples=num_examples)
        image_format, size, in_memory = RECIPE_READS[name]
        records = EncodedRecords(dataset.train.records, num_examples, image_format, size)
        per_read = dataclasses.replace(dataset.train, records=records)
        recipe = load_in_memory(per_read) if in_memory else per_read

        def batches(source) -> data.TrainBatches:
            augment = dataset.train_augment
            return data.TrainBatches(source, batch, 0, dataset.num_classes, augment=augment)

        recipe_seconds = time_pipeline(batches(recipe), steps, threads)
        decode_seconds = (  # where the recipe decodes every read (ImageNet): one pipeline
            time_pipeline(batches(per_read), steps, threads) if in_memory else recipe_seconds
        )
        return cls(dataset, batches(recipe), batch / recipe_seconds, batch / decode_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="wrn_tiny,wrn_small,resnet20")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--data-threads", type=int, default=8, help="the CIFAR recipe's config.train.data_threads"
    )
    parser.add_argument(
        "--compute-dtype", choices=mixed_precision.COMPUTE_DTYPES, default="float32"
    )
    args = parser.parse_args()

    archs = args.models.split(",")
    unknown = sorted(set(archs) - ARCHITECTURES.keys())
    if unknown:
        parser.error(
            f"unknown --models {', '.join(unknown)}; choose from {', '.join(ARCHITECTURES)}"
        )
    pipelines = {
        name: Pipeline.measure(name, args.batch, max(args.steps, 20), args.data_threads)
        for name in dict.fromkeys(ARCHITECTURES[arch][2] for arch in archs)
    }
    device = jax.devices()[0]
    peaks = PEAK_FLOPS[args.compute_dtype].items()
    peak = next((p for k, p in peaks if k in device.device_kind), None)
    print(
        f"{jax.device_count()} x {device.device_kind} ({jax.default_backend()}); global batch "
        f"{args.batch}; compute dtype {args.compute_dtype}; input pipelines on "
        f"{args.data_threads} grain threads:"
    )
    for name, pipeline in pipelines.items():
        print(
            f"  {name}: {pipeline.recipe_rate:,.0f} examples/s as its recipe reads, "
            f"{pipeline.decode_rate:,.0f} decoding every record per read"
        )
    header = f"{'model':10s} {'method':14s} {'examples/s':>11s} {'pipeline/step':>14s}"
    print(header + f" {'decode/step':>12s}" + (f" {'TFLOP/s':>8s} {'MFU':>6s}" if peak else ""))
    available = [m for m in args.methods.split(",") if m in methods.METHODS.names()]
    for arch in archs:
        rates_of, members, pipeline = {}, 1, pipelines[ARCHITECTURES[arch][2]]
        for method_name in available:
            exp = experiment(arch, method_name, pipeline.dataset, args.batch, args.compute_dtype)
            seconds, flops = time_train_step(exp, pipeline.batches, args.steps)
            rate = rates_of[method_name] = args.batch / seconds
            if method_name == "batchensemble":
                members = exp.model.layers.ensemble_size  # the M copies the model tiles
            line = (
                f"{arch:10s} {method_name:14s} {rate:11,.0f} "
                f"{pipeline.recipe_rate / rate:14.1f} {pipeline.decode_rate / rate:12.1f}"
            )
            if peak:
                line += f" {flops / seconds / 1e12:8.1f} {flops / seconds / peak:6.1%}"
            print(line, flush=True)
        if {"deterministic", "batchensemble"} <= rates_of.keys():
            quarter = rates_of["deterministic"] / members
            print(
                f"{arch:10s} batchensemble / (deterministic / {members}) examples/s: "
                f"{rates_of['batchensemble'] / quarter:.2f} (target >= 0.9)"
            )
    skipped = sorted(set(args.methods.split(",")) - set(available))
    if skipped:
        print(f"(unknown methods skipped: {', '.join(skipped)})")


if __name__ == "__main__":
    main()

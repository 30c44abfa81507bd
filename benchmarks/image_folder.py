"""``image_folder`` decoding PNGs on grain threads, against the step it feeds.

    PYTHONPATH=. python benchmarks/image_folder.py [--batch 128] [--data-threads 8]

Writes a folder of 32x32 RGB PNGs (10 classes), reads it through ``image_folder``
(``relbench.data.image_folders``: every training batch decoded from its files, then
normalized and crop+flip augmented as the CIFAR recipe does) with the loop's own input
pipeline (``train_iterator`` over ``TrainBatches`` on ``--data-threads`` grain
threads, then ``sharding.global_batch``), and times, side by side in this process, the
loop's jitted train step of the CIFAR ResNet-20 recipe (``resnet_cifar`` depth 20,
deterministic, SGD, global batch 128) on the same batches. It reports

    decoded examples/s / train-step examples/s      (target >= 3)

pipeline first, step second, pipeline again (the two pipeline rounds bound the drift of
a shared machine's load), with the pipeline on 0 threads beside it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile

import numpy as np
import PIL.Image

from benchmarks.models import experiment, time_pipeline, time_train_step
from relbench import data


def write_folder(root: pathlib.Path, num_images: int, size: int = 32) -> None:
    rng = np.random.default_rng(0)
    for i in range(num_images):
        folder = root / f"class_{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        # Smooth images compress like photographs; uniform noise would not.
        base = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        image = PIL.Image.fromarray(base).resize((size, size), PIL.Image.BILINEAR)
        image.save(folder / f"{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=5, help="timed train steps")
    parser.add_argument("--batches", type=int, default=20, help="timed pipeline batches")
    parser.add_argument("--data-threads", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp) / "images"
        write_folder(root, args.images)
        dataset = data.make(
            "image_folder", path=str(root), fractions=(0.9, 0.0, 0.1), augment="crop_flip"
        )
        batches = data.TrainBatches(
            dataset.train, args.batch, 0, dataset.num_classes, augment=dataset.train_augment
        )
        serial = args.batch / time_pipeline(batches, args.batches, 0)
        before = args.batch / time_pipeline(batches, args.batches, args.data_threads)
        exp = experiment("resnet20", "deterministic", dataset, args.batch)
        seconds, _ = time_train_step(exp, batches, args.steps)
        after = args.batch / time_pipeline(batches, args.batches, args.data_threads)
    step_rate = args.batch / seconds
    load = os.getloadavg()[0]
    print(
        f"image_folder, {args.images} 32x32 PNGs, global batch {args.batch}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the end"
    )
    print(f"decoded examples/s on 0 grain threads: {serial:,.0f}")
    print(f"decoded examples/s on {args.data_threads} threads: {before:,.0f} then {after:,.0f}")
    print(f"ResNet-20 train step examples/s: {step_rate:,.0f}")
    print(
        f"ratio decoded / consumed: {min(before, after) / step_rate:.1f} "
        f"(worse round; {max(before, after) / step_rate:.1f} better), target >= 3"
    )


if __name__ == "__main__":
    main()

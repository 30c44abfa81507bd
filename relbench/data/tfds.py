"""TFDS datasets read through ``tfds.data_source`` (array_record) and grain.

No TensorFlow is needed to *read* a prepared dataset. Preparing one (downloading and
converting it) is a separate, one-time step that this module never attempts: it fails
with a message that says how to prepare the data instead.

The catalogue (``PRESETS``): mnist, fashion_mnist, cifar10, cifar100, svhn_cropped and
imagenet2012, each with its standard normalization and training augmentation (see
``relbench.data.augment``). Beside the test split a dataset can carry

* a validation set cut from the training split by percent (``validation_percent``);
* shifted, labelled sets: any other labelled TFDS split (``shifts``, e.g.
  ``imagenet_v2``, ``imagenet_a``, ``imagenet_r``);
* its corruption benchmark (``Dataset.corrupted``: ``cifar10_corrupted``,
  ``imagenet2012_corrupted``), which the evaluation's shift suite reads where it is
  prepared (``relbench.train.evaluation``): corrupted sets have one path, the suite;
* out-of-distribution sets from other TFDS datasets (``ood``), normalized like the
  in-distribution data so the model sees them exactly as it sees its own inputs.

``mock_num_examples > 0`` builds everything from ``tfds.testing.mock_data`` (random
examples with the real feature specs), for smoke runs and tests on any machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from unittest import mock

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from relbench.data.augment import ImageAugment, normalize, resize_center_crop
from relbench.data.sources import ArraySource, CorruptionBenchmark, Dataset, EvalSet
from relbench.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Preset:
    """How a catalogue dataset is preprocessed, and where its corrupted variants live."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str
    image_size: int | None = None  # variable-size images are cropped to this square
    corrupted: str | None = None  # the TFDS name of its corruption benchmark
    corrupted_split: str = "test"


PRESETS: dict[str, Preset] = {
    "mnist": Preset((0.0,), (1.0,), "none"),
    "fashion_mnist": Preset((0.0,), (1.0,), "none"),
    "cifar10": Preset(
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "crop_flip", None, "cifar10_corrupted"
    ),
    "cifar100": Preset((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "crop_flip"),
    "svhn_cropped": Preset((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), "none"),
    "imagenet2012": Preset(
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        "inception_crop",
        224,
        "imagenet2012_corrupted",
        "validation",
    ),
}


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A TFDS array-record split read a batch at a time as normalized float images.

    Attributes:
      records: the ``tfds.data_source`` split.
      image_key, label_key: the feature names in the records.
      mean, std: per-channel normalization of ``x / 255``.
      image_size: if set, variable-size images are resized and centre-cropped to it.
      raw: return the decoded uint8 images unchanged, as an object array, for a
        training augmentation that crops them itself (``inception_crop``).
    """

    records: Sequence[Mapping[str, Any]]
    image_key: str = "image"
    label_key: str = "label"
    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)
    image_size: int | None = None
    raw: bool = False

    def __len__(self) -> int:
        return len(self.records)

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        rows = self.records.__getitems__([int(i) for i in indices])
        labels = np.array([r[self.label_key] for r in rows], np.int32)
        images = [np.asarray(r[self.image_key]) for r in rows]
        if self.raw:
            inputs = np.empty(len(images), object)
            for i, image in enumerate(images):
                inputs[i] = image
            return {"input": inputs, "label": labels}
        if self.image_size is not None:
            images = [resize_center_crop(image, self.image_size) for image in images]
        return {"input": normalize(np.stack(images), self.mean, self.std), "label": labels}


def load_in_memory(source: TfdsSource, chunk: int = 1024) -> ArraySource:
    """Every record of ``source`` decoded and normalized once, held as float32 arrays
    (CIFAR-10's training split: 614 MB), so that a batch is one gather."""
    if source.raw or source.image_size is not None:
        raise UsageError(
            "config.dataset.in_memory holds fixed-size images only; set it to False for "
            "datasets of variable-size images"
        )
    chunks = [
        source.read(np.arange(start, min(start + chunk, len(source))))
        for start in range(0, len(source), chunk)
    ]
    return ArraySource({key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]})


def _fixed_getitems(record_keys, generator, serialized=False):
    del serialized  # the mocked records are already decoded.
    return [generator[int(k)] for k in record_keys]


@contextlib.contextmanager
def mock_tfds(num_examples: int):
    """``tfds.testing.mock_data`` with ``num_examples`` per split, readable in batches.

    tfds 4.9 binds its mocked ``__getitems__`` without the data source, so batch reads
    fail; the patch replaces it with a batch read of the same fake examples.
    """
    from tensorflow_datasets.testing import mocking

    with (
        mock.patch.object(mocking, "_getitems", _fixed_getitems),
        tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE),
    ):
        yield


def _data_source(name: str, split: str, data_dir: str | None):
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as error:  # tfds raises several types for a missing dataset.
        where = data_dir or "the default TFDS data_dir (~/tensorflow_datasets)"
        raise UsageError(
            f"TFDS dataset '{name}' split '{split}' is not prepared in {where} "
            f"({type(error).__name__}); prepare it once with "
            f"`tfds build {name} --file_format=array_record` in an environment with "
            "TensorFlow, or set config.dataset.data_dir to where it is"
        ) from None


def _info(name: str, data_dir: str | None):
    try:
        return tfds.builder(name, data_dir=data_dir).info
    except Exception as error:  # an unknown name or a missing dataset_info.json.
        raise UsageError(
            f"TFDS dataset '{name}' is unknown or not prepared ({type(error).__name__}); "
            "check the name at https://www.tensorflow.org/datasets/catalog and prepare it "
            f"with `tfds build {name} --file_format=array_record`"
        ) from None


def corruption_names(corrupted: str) -> list[str]:
    """The corruption types of a TFDS corruption benchmark (its configs minus severity)."""
    configs = tfds.builder_cls(corrupted).BUILDER_CONFIGS
    return sorted({c.name.rsplit("_", 1)[0] for c in configs})


#: Native corruption names where a benchmark's TFDS name differs.
NATIVE_NAMES = {"jpeg_compression": "jpeg"}


def _benchmark(
    preset: Preset | None, source: Callable[[str, str], TfdsSource]
) -> CorruptionBenchmark | None:
    """The preset's corruption benchmark, read with the dataset's normalization."""
    if preset is None or preset.corrupted is None:
        return None
    corrupted, split = preset.corrupted, preset.corrupted_split
    tfds_names = {NATIVE_NAMES.get(n, n): n for n in corruption_names(corrupted)}

    def read(name: str, severity: int) -> EvalSet | None:
        spec = f"{corrupted}/{tfds_names[name]}_{severity}"
        try:
            return EvalSet(source(spec, split))
        except UsageError as error:
            logging.warning("%s/%d: %s", name, severity, error)
            return None

    return CorruptionBenchmark(tuple(tfds_names), read)


def tfds_dataset(
    tfds_name: str,
    train_split: str = "train",
    validation_percent: float = 0.0,
    eval_splits: Mapping[str, str] | None = None,
    shifts: Mapping[str, str] | None = None,
    ood: Mapping[str, str] | None = None,
    augment: str | None = None,
    mixup_alpha: float = 0.0,
    image_size: int | None = None,
    data_dir: str | None = None,
    image_key: str = "image",
    label_key: str = "label",
    in_memory: bool = False,
    mock_num_examples: int = 0,
) -> Dataset:
    """A TFDS image-classification dataset with its evaluation, shift and OOD sets.

    Args:
      tfds_name: the TFDS name, e.g. ``"mnist"`` or ``"cifar10"``; names in ``PRESETS``
        get their standard normalization and augmentation, others none.
      train_split: the training split (TFDS slicing syntax allowed, e.g. ``"train[:50%]"``).
      validation_percent: if > 0, the last this-many percent of ``train_split`` become
        the ``"validation"`` set and are left out of training.
      eval_splits: evaluation-set name -> split; default ``{"test": "test"}``
        (``{"test": "validation"}`` for imagenet2012, whose test labels are private).
      shifts: shifted labelled sets: name -> ``"dataset:split"`` of another TFDS
        dataset with the same classes (e.g. ``{"imagenet_v2": "imagenet_v2:test"}``).
      ood: OOD sets: name -> ``"dataset:split"`` of another TFDS dataset with images of
        the same shape (its labels are ignored).
      augment: ``"none"``, ``"crop_flip"`` or ``"inception_crop"``; None for the preset's.
      mixup_alpha: mixup's Beta(alpha, alpha); 0 disables mixup.
      image_size: side of the square crops of a variable-size dataset (imagenet2012);
        None for the preset's (224).
      data_dir: where the prepared data lives; None for TFDS's default.
      image_key, label_key: the feature names in the records.
      in_memory: decode and normalize the training split once and hold it in memory
        (fixed-size images only; 4 bytes per pixel and channel), so that reading a
        batch costs a gather instead of a record read, an image decode and a
        normalization per example: what keeps the input pipeline ahead of a fast
        accelerator on CIFAR-sized data.
      mock_num_examples: if > 0, random examples (``tfds.testing.mock_data``), that
        many per split, instead of prepared data.
    """
    if mock_num_examples > 0:
        with mock_tfds(mock_num_examples):
            dataset = tfds_dataset(
                tfds_name,
                train_split,
                validation_percent,
                eval_splits,
                shifts,
                ood,
                augment,
                mixup_alpha,
                image_size,
                data_dir,
                image_key,
                label_key,
                in_memory,
            )
        if dataset.corrupted is None:
            return dataset
        read = dataset.corrupted.read

        def mocked_read(name: str, severity: int) -> EvalSet | None:
            with mock_tfds(mock_num_examples):
                return read(name, severity)

        benchmark = CorruptionBenchmark(dataset.corrupted.names, mocked_read)
        return dataclasses.replace(dataset, corrupted=benchmark)
    preset = PRESETS.get(tfds_name)
    mean, std = (preset.mean, preset.std) if preset else ((0.0,), (1.0,))
    image_size = image_size or (preset.image_size if preset else None)
    augment = augment or (preset.augment if preset else "none")
    info = _info(tfds_name, data_dir)
    num_classes = info.features[label_key].num_classes
    input_shape = tuple(info.features[image_key].shape)
    if None in input_shape:
        if image_size is None:
            raise UsageError(
                f"TFDS dataset '{tfds_name}' has variable-size images and no preset image "
                "size; use a dataset of fixed-size images"
            )
        input_shape = (image_size, image_size, input_shape[-1])
    if augment == "inception_crop":
        image_size = image_size or input_shape[0]

    def source(name: str, split: str, raw: bool = False) -> TfdsSource:
        records = _data_source(name, split, data_dir)
        return TfdsSource(records, image_key, label_key, mean, std, image_size, raw)

    eval_splits = dict(
        eval_splits or {"test": "validation" if tfds_name == "imagenet2012" else "test"}
    )
    if validation_percent > 0:
        if "[" in train_split or not 0 < validation_percent < 100:
            raise UsageError(
                "config.dataset.validation_percent needs an unsliced train_split and a "
                f"percentage in (0, 100); got '{train_split}' and {validation_percent}"
            )
        cut = f"{100 - validation_percent:g}%"
        eval_splits["validation"] = f"{train_split}[{cut}:]"
        train_split = f"{train_split}[:{cut}]"

    train = source(tfds_name, train_split, raw=augment == "inception_crop")
    if in_memory:
        train = load_in_memory(train)
    eval_sets = {name: EvalSet(source(tfds_name, split)) for name, split in eval_splits.items()}
    for set_name, spec in (shifts or {}).items():
        other, _, split = spec.partition(":")
        eval_sets[set_name] = EvalSet(source(other, split or "test"))
    for set_name, spec in (ood or {}).items():
        other, _, split = spec.partition(":")
        other_shape = tuple(_info(other, data_dir).features[image_key].shape)
        if None not in other_shape and other_shape != input_shape:
            raise UsageError(
                f"OOD set '{set_name}' ({other}) has images of shape {other_shape}, but "
                f"{tfds_name} has {input_shape}; choose an OOD dataset of the same shape"
            )
        eval_sets[set_name] = EvalSet(source(other, split or "test"), is_ood=True)
    train_augment = None
    if augment != "none" or mixup_alpha > 0:
        train_augment = ImageAugment(
            augment,
            mean,
            std,
            size=image_size or input_shape[0],
            mixup_alpha=mixup_alpha,
            partner_source=train,
            num_classes=num_classes,
        )
    return Dataset(
        train,
        eval_sets,
        num_classes,
        input_shape,
        train_augment=train_augment,
        corrupted=_benchmark(preset, source),
    )


def preset_factory(tfds_name: str):
    """The registry entry for a catalogue dataset: ``tfds_dataset`` with its name bound."""
    return functools.partial(tfds_dataset, tfds_name)

"""``image_folder``: PNG/JPEG images in one subfolder per class, decoded when read.

    root/
      cat/001.png  cat/002.jpg ...
      dog/...

Classes are the subfolder names in sorted order (labels ``0..K-1``). Splits, OOD sets
and shifted sets are given as for ``relbench.data.files`` (``path`` cut by
``fractions`` with ``split_seed``, or ``splits``: a class-folder root per set; an OOD
set is any folder of images, searched recursively).

Reading. Nothing is decoded when the dataset is built (only image headers are read,
to check sizes): a batch read decodes its files with Pillow, so training batches are
decoded on the grain threads of ``config.train.data_threads``
(``relbench.data.sources.train_iterator``). Images are converted to ``channels`` (1:
grayscale, 3: RGB); with ``image_size`` > 0 the shorter side is resized (bicubic) to
``image_size / crop_fraction`` and the central ``image_size`` square is cut;
``image_size`` 0 keeps every image as it is, which needs every image to have one size.

Normalization. Inputs are ``(x / 255 - mean) / std`` per channel. Unless ``mean`` and
``std`` are given, they are computed once on the training split (one decoding pass)
and stored *next to the data*, in ``<root>/.relbench_normalization.json`` (``root``:
``path``, or ``splits["train"]``), keyed by a digest of the training files (names,
sizes, modification times) and the resize settings, so that every later run, and
every process of a multi-process run, reads them instead of decoding the split again;
where the data's folder is read-only they are recomputed by each run (logged).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import uuid
from collections.abc import Mapping, Sequence

import numpy as np
import PIL.Image
from absl import logging

from relbench.data.augment import ImageAugment, normalize, resize_center_crop
from relbench.data.files import existing, labelled_sets, num_classes_of
from relbench.data.sources import Dataset, EvalSet
from relbench.errors import UsageError

SUFFIXES = (".png", ".jpg", ".jpeg")
STATISTICS_FILE = ".relbench_normalization.json"
_MODES = {1: "L", 3: "RGB"}


def _images_in(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def class_folder(root: str, field: str) -> dict[str, np.ndarray]:
    """``{"file": paths, "class": subfolder names}`` of a one-subfolder-per-class root."""
    folder = existing(root, field, "image folder")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise UsageError(
            f"image folder '{root}' has no class subfolders; put each class's images in "
            f"a subfolder of its own (config.dataset.{field})"
        )
    files, names = [], []
    for name in classes:
        found = _images_in(folder / name)
        files += [str(p) for p in found]
        names += [name] * len(found)
    if not files:
        raise UsageError(f"image folder '{root}' has no {'/'.join(SUFFIXES)} images")
    return {"file": np.array(files), "class": np.array(names)}


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """Image files read a batch at a time: decoded, resized, normalized float32."""

    files: np.ndarray  # [N] paths
    labels: np.ndarray  # [N] int32 (-1: OOD)
    channels: int
    image_size: int
    crop_fraction: float
    mean: Sequence[float]
    std: Sequence[float]

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, index: int) -> np.ndarray:
        """One image as uint8 ``[H, W, channels]`` at the dataset's size."""
        with PIL.Image.open(self.files[index]) as image:
            pixels = np.asarray(image.convert(_MODES[self.channels]))
        pixels = pixels.reshape(*pixels.shape[:2], self.channels)
        if self.image_size and (
            pixels.shape[:2] != (self.image_size, self.image_size) or self.crop_fraction != 1
        ):
            pixels = resize_center_crop(pixels, self.image_size, self.crop_fraction)
        return pixels

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        images = np.stack([self.decode(int(i)) for i in indices])  # [B, H, W, C] uint8
        return {"input": normalize(images, self.mean, self.std), "label": self.labels[indices]}


def _size(file: str) -> tuple[int, int]:
    try:
        with PIL.Image.open(file) as image:
            return image.size
    except (OSError, PIL.UnidentifiedImageError) as error:
        raise UsageError(f"cannot read image '{file}' ({error}); remove or replace it") from None


def _check_sizes(files: Sequence[str], image_size: int) -> tuple[int, int]:
    """The one (height, width) of every image (read from the headers); mixed sizes need
    ``image_size``, which makes reading them unnecessary."""
    if image_size:
        return image_size, image_size
    sizes: dict[tuple[int, int], str] = {}
    for file in files:
        sizes.setdefault(_size(file), file)
        if len(sizes) > 1:
            (a, fa), (b, fb) = list(sizes.items())[:2]
            raise UsageError(
                f"images of different sizes ({a[0]}x{a[1]} '{fa}', {b[0]}x{b[1]} '{fb}'); "
                "set config.dataset.image_size to resize and crop them to one square size"
            )
    width, height = next(iter(sizes))
    return height, width


def _digest(files: Sequence[str], settings: Mapping) -> str:
    hasher = hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode())
    for file in files:
        stat = os.stat(file)
        hasher.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return hasher.hexdigest()[:16]


def training_statistics(
    source: ImageFiles, root: pathlib.Path, chunk: int = 256
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``x / 255`` over the training images, stored in (and
    read back from) ``root / STATISTICS_FILE``."""
    settings = {
        "channels": source.channels,
        "size": source.image_size,
        "crop": source.crop_fraction,
    }
    key = _digest(source.files.tolist(), settings)
    store = root / STATISTICS_FILE
    stored = json.loads(store.read_text()) if store.is_file() else {}
    if key in stored:
        return stored[key]["mean"], stored[key]["std"]
    raw = dataclasses.replace(source, mean=(0.0,), std=(1.0,))
    sums = np.zeros(source.channels)
    squares = np.zeros(source.channels)
    for start in range(0, len(raw), chunk):
        x = raw.read(np.arange(start, min(start + chunk, len(raw))))["input"].astype(np.float64)
        sums += x.sum(axis=(0, 1, 2))
        squares += (x**2).sum(axis=(0, 1, 2))
    count = len(raw) * np.prod(raw.read(np.zeros(1, np.int64))["input"].shape[1:3])
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    stats = {"mean": mean.tolist(), "std": np.where(std > 0, std, 1.0).tolist()}
    try:
        tmp = store.with_name(f"{STATISTICS_FILE}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps({**stored, key: stats}, indent=1) + "\n")
        tmp.replace(store)  # processes may race: each writes whole, equal contents
    except OSError as error:
        logging.warning("cannot store normalization statistics in %s: %s", store, error)
    return stats["mean"], stats["std"]


def image_folder(
    path: str = "",
    splits: Mapping[str, str] | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    image_size: int = 0,
    crop_fraction: float = 1.0,
    channels: int = 3,
    mean: Sequence[float] = (),
    std: Sequence[float] = (),
    augment: str = "none",
    ood: Mapping[str, str] | None = None,
    shifts: Mapping[str, str] | None = None,
) -> Dataset:
    """Images in one subfolder per class (see the module docstring).

    Args:
      path: one class-folder root, cut into train/validation/test by ``fractions``.
      splits: instead of ``path``: set name -> class-folder root, ``train`` among them.
      fractions, split_seed: as for ``relbench.data.files.arrays``.
      image_size: the side of the square inputs; 0 keeps the images' own (single) size.
      crop_fraction: the central crop's share of the resized shorter side (1: the
        whole shorter side; 0.875: the ImageNet evaluation crop).
      channels: 1 (grayscale) or 3 (RGB); images are converted to it.
      mean, std: per-channel normalization of ``x / 255``; empty: the training split's.
      augment: training augmentation, ``"none"`` or ``"crop_flip"`` (pad 4, random crop,
        flip: the CIFAR recipe).
      ood: OOD set name -> folder of images (any layout).
      shifts: shifted labelled set name -> class-folder root with the training classes.
    """
    if channels not in _MODES:
        raise UsageError(f"config.dataset.channels must be 1 or 3, got {channels}")
    if augment not in ("none", "crop_flip"):
        raise UsageError(f"config.dataset.augment '{augment}' is not one of: none, crop_flip")
    if bool(mean) != bool(std) or (mean and not len(mean) == len(std) == channels):
        raise UsageError(
            f"config.dataset.mean and std need {channels} values each (or both empty, to "
            "compute them on the training split)"
        )
    sets = labelled_sets(class_folder, path, splits or {}, fractions, split_seed, shifts or {})
    classes = sorted(set(sets["train"]["class"].tolist()))
    for name, examples in sets.items():
        unknown = sorted(set(examples["class"].tolist()) - set(classes))
        if unknown:
            raise UsageError(
                f"the '{name}' set has class folder '{unknown[0]}', which the training set "
                f"lacks; its classes are: {', '.join(classes)}"
            )
        examples["label"] = np.searchsorted(classes, examples["class"]).astype(np.int32)
    num_classes_of(sets, len(classes))
    ood_files = {}
    for name, folder in (ood or {}).items():
        found = _images_in(existing(folder, f"ood.{name}", "image folder"))
        if not found:
            raise UsageError(f"OOD image folder '{folder}' has no {'/'.join(SUFFIXES)} images")
        ood_files[name] = np.array([str(p) for p in found])
    every_file = [f for e in sets.values() for f in e["file"]]
    height, width = _check_sizes(
        every_file + [f for f in ood_files.values() for f in f], image_size
    )

    def source(files, labels, mean, std) -> ImageFiles:
        return ImageFiles(files, labels, channels, image_size, crop_fraction, mean, std)

    train = sets["train"]
    if not mean:
        root = pathlib.Path(path or (splits or {})["train"]).expanduser()
        mean, std = training_statistics(source(train["file"], train["label"], (0.0,), (1.0,)), root)
    eval_sets = {
        name: EvalSet(source(e["file"], e["label"], mean, std))
        for name, e in sets.items()
        if name != "train"
    }
    for name, files in ood_files.items():
        unlabelled = np.full(len(files), -1, np.int32)  # OOD examples have no class
        eval_sets[name] = EvalSet(source(files, unlabelled, mean, std), is_ood=True)
    return Dataset(
        train=source(train["file"], train["label"], mean, std),
        eval_sets=eval_sets,
        num_classes=len(classes),
        input_shape=(height, width, channels),
        train_augment=None if augment == "none" else ImageAugment(augment, mean, std),
    )

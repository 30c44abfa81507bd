"""Datasets behind one registry: ``relbench.data.make(name, **kwargs) -> Dataset``.

Embedded sets (``two_moons``, ``digits``, ``noisy_digits``, ``diabetes``,
``heteroscedastic_toy``, ``multilabel_toy``, the group-shifted ``colored_digits``), the
TFDS catalogue (``mnist``,
``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn_cropped``, ``imagenet2012``; any
other TFDS image dataset through ``tfds`` with ``tfds_name``) and ``clinc_oos``; the
user's own files: ``arrays`` and ``table`` (``data.files``), ``image_folder``
(``data.image_folders``). ``register(name, factory)`` adds a dataset; installed plugins
join through the ``relbench.datasets`` entry points (``relbench.registry``).
"""

from __future__ import annotations

from relbench.data.embedded import digits, two_moons
from relbench.data.files import arrays, table
from relbench.data.groups import colored_digits
from relbench.data.image_folders import image_folder
from relbench.data.label_noise import noisy_digits
from relbench.data.multilabel import multilabel_toy
from relbench.data.multirater import cifar10h, multirater_digits
from relbench.data.regression import diabetes, heteroscedastic_toy
from relbench.data.sources import (
    ArraySource,
    Augment,
    Dataset,
    EvalSet,
    Probe,
    Source,
    TrainBatches,
    eval_batches,
    train_iterator,
)
from relbench.data.subset import SubsetSource, labelled_subset, long_tailed, split_tasks
from relbench.data.text import clinc_oos
from relbench.data.tfds import PRESETS, preset_factory, tfds_dataset
from relbench.registry import Registry

DATASETS = Registry(
    "dataset",
    {
        "two_moons": two_moons,
        "digits": digits,
        "tfds": tfds_dataset,
        "noisy_digits": noisy_digits,
        "diabetes": diabetes,
        "heteroscedastic_toy": heteroscedastic_toy,
        "multilabel_toy": multilabel_toy,
        "clinc_oos": clinc_oos,
        "colored_digits": colored_digits,
        "labelled_subset": labelled_subset,
        "long_tailed": long_tailed,
        "split_tasks": split_tasks,
        "multirater_digits": multirater_digits,
        "cifar10h": cifar10h,
        **{name: preset_factory(name) for name in PRESETS},
        "arrays": arrays,
        "image_folder": image_folder,
        "table": table,
    },
    entry_points="relbench.datasets",
)
make = DATASETS.make
register = DATASETS.register

__all__ = [
    "ArraySource",
    "Augment",
    "DATASETS",
    "Dataset",
    "EvalSet",
    "Probe",
    "Source",
    "SubsetSource",
    "TrainBatches",
    "eval_batches",
    "make",
    "register",
    "train_iterator",
]

"""WRN-28-10 on CIFAR-100: the Uncertainty Baselines recipe [1, 2], method as argument.

    relbench train --config experiments/cifar100_wrn28_10.py:batchensemble --workdir runs/c100

``arg``: ``METHOD[,smoke]`` (default ``deterministic``); ``smoke`` trains a tiny WRN
for 2 steps on mock data (tests, any CPU). Data: ``tfds build cifar100 cifar10
svhn_cropped --file_format=array_record`` once, where TensorFlow is installed.
Evaluation: the test set, the shift suite ``cifar100_c`` (the native corruptions,
11 x 5 severities: TFDS has no CIFAR-100-C) and OOD detection against CIFAR-10 and
SVHN.

Hardware assumed: 8 accelerators (a TPU v3-8 in [1]; 8 GPUs work the same), global batch
512, independent of the device count.

Targets (published in [1], *not* our results): deterministic 79.8% accuracy, NLL
0.875; the other methods' numbers are in the CIFAR-100 table of [1]'s
``baselines/cifar/README.md``.

Per-method hyperparameters follow ``baselines/cifar/<method>.py`` of [1] with the
CIFAR-100 settings, applied only when that method is chosen: L2 3e-4 for every method;
MC dropout rate 0.1; SNGP spectral-norm bound 6, 1024 random features, input
normalization, mean-field factor 7.5, base LR 0.04, decay at epochs 60/120/160 of 250;
BatchEnsemble 4 members, random-sign init -0.5 (``fast_weight_init="random_sign"``),
decay at epochs 80/160/180 of 250; deep ensemble of 4; MIMO 3 members, batch
repetitions 4, input repetition probability 0.5;
variational: Flipout convolutions and output layer (other settings: the method's
defaults).

References:
  [1] Nado et al. Uncertainty Baselines. 2021. https://arxiv.org/abs/2106.04015,
      https://github.com/google/uncertainty-baselines/tree/main/baselines/cifar
  [2] Liu et al. Simple and Principled Uncertainty Estimation with Deterministic Deep
      Learning via Distance Awareness (SNGP). NeurIPS 2020.
      https://arxiv.org/abs/2006.10108
"""

import ml_collections

from relbench.configs.recipes import cifar_wrn28_10, decay_fractions, scaled_learning_rate

METHOD_RECIPES = {
    "mc_dropout": {"method": {"dropout_rate": 0.1}},
    "deep_ensemble": {"method": {"ensemble_size": 4}},
    "mimo": {
        "method": {"ensemble_size": 3, "batch_repetitions": 4, "input_repetition_probability": 0.5}
    },
    "variational": {"method": {"layers": ("conv", "head")}},
    "sngp": {
        "method": {
            "norm_bound": 6.0,
            "num_random_features": 1024,
            "normalize_input": True,
            "mean_field_factor": 7.5,
        },
        "optimizer": {
            "learning_rate": scaled_learning_rate(0.04, 512, 128),
            "decay_epochs_fraction": decay_fractions((60, 120, 160), 250),
        },
        "train": {"num_epochs": 250.0},
    },
    "batchensemble": {
        "method": {"ensemble_size": 4, "fast_weight_init": "random_sign"},
        "optimizer": {"decay_epochs_fraction": decay_fractions((80, 160, 180), 250)},
        "train": {"num_epochs": 250.0},
    },
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return cifar_wrn28_10(
        "cifar100",
        arg,
        l2=3e-4,
        ood={"cifar10": "cifar10:test", "svhn": "svhn_cropped:test"},
        method_recipes=METHOD_RECIPES,
    )

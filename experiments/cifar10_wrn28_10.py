"""WRN-28-10 on CIFAR-10: the Uncertainty Baselines recipe [1, 2], method as argument.

    relbench train --config experiments/cifar10_wrn28_10.py:sngp --workdir runs/c10_sngp

``arg``: ``METHOD[,smoke]`` (default ``deterministic``); ``smoke`` trains a tiny WRN
for 2 steps on mock data (tests, any CPU). Data: ``tfds build cifar10 cifar100
svhn_cropped cifar10_corrupted --file_format=array_record`` once, where TensorFlow is
installed. Evaluation: the test set, the shift suite ``cifar10_c`` (CIFAR-10-C's 19 corruptions x
5 severities where prepared; cAcc, cNLL, cECE, cBrier) and OOD detection against CIFAR-100 and SVHN.

Hardware assumed: 8 accelerators (a TPU v3-8 in [1]; 8 GPUs work the same), global batch
512. The global batch is a config value: the same config on any number of devices
trains the same model.

Targets (published in [1, 2], *not* our results; accuracy / NLL / ECE on the test set):
deterministic 96.0% / 0.159 / 0.023; SNGP 96.0% / 0.134 / 0.007; BatchEnsemble (4
members) 96.3% / 0.136 / 0.018; deep ensemble of 4: 96.6% / 0.114 / 0.010.

Per-method hyperparameters follow ``baselines/cifar/<method>.py`` of [1] and are
applied only when that method is chosen: MC dropout rate 0.1; SNGP spectral-norm
bound 6, 1024 random features, input normalization, mean-field factor 20, base LR
0.08, L2 3e-4, decay at epochs 60/120/160 of 250; BatchEnsemble 4 members, random-sign
init -0.5 (+-1 fast weights with equal probability: ``fast_weight_init="random_sign"``),
L2 3e-4, decay at epochs 80/160/180 of 250 (its fast-weight LR multiplier 0.5 is not
modelled); deep ensemble of 4; MIMO 3 members, batch repetitions 4, input repetition
probability 0.5; variational: Flipout convolutions and output layer, as in
``variational_inference.py`` (its other settings are the method's defaults).

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
            "mean_field_factor": 20.0,
        },
        "optimizer": {
            "learning_rate": scaled_learning_rate(0.08, 512, 128),
            "weight_decay": 6e-4,
            "decay_epochs_fraction": decay_fractions((60, 120, 160), 250),
        },
        "train": {"num_epochs": 250.0},
    },
    "batchensemble": {
        "method": {"ensemble_size": 4, "fast_weight_init": "random_sign"},
        "optimizer": {
            "weight_decay": 6e-4,
            "decay_epochs_fraction": decay_fractions((80, 160, 180), 250),
        },
        "train": {"num_epochs": 250.0},
    },
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return cifar_wrn28_10(
        "cifar10",
        arg,
        l2=2e-4,
        ood={"cifar100": "cifar100:test", "svhn": "svhn_cropped:test"},
        method_recipes=METHOD_RECIPES,
    )

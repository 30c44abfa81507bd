"""Models behind one registry: ``relbench.models.make(name, **kwargs) -> nn.Module``.

Every model maps ``[B, ...]`` inputs to ``(logits [M, B, K], extras)`` (``Classifier``)
and is built from one record of layer types, its ``layers`` field (``LayerTypes``).
"""

from __future__ import annotations

import dataclasses

from relbench.models.classifier import Classifier
from relbench.models.cnn import CNN
from relbench.models.layer_types import LayerTypes
from relbench.models.lstm import LSTMClassifier
from relbench.models.mlp import MLP
from relbench.models.nnx_mlp import NNXMLP
from relbench.models.resnet import CifarResNet, ResNet
from relbench.models.vit import VisionTransformer
from relbench.models.wide_resnet import WideResNet
from relbench.registry import Registry

MODELS = Registry(
    "model",
    {
        "mlp": MLP,
        "cnn": CNN,
        "resnet_cifar": CifarResNet,
        "resnet": ResNet,
        "wide_resnet": WideResNet,
        "vit": VisionTransformer,
        "lstm": LSTMClassifier,
        "nnx_mlp": NNXMLP,
    },
    entry_points="relbench.models",
)
make = MODELS.make
register = MODELS.register


def default_layers(name: str) -> LayerTypes:
    """The layer types model ``name`` is built from unless a method changes them."""
    field = {f.name: f for f in dataclasses.fields(MODELS.get(name))}["layers"]
    return field.default


__all__ = [
    "CNN",
    "MLP",
    "MODELS",
    "NNXMLP",
    "CifarResNet",
    "Classifier",
    "LSTMClassifier",
    "LayerTypes",
    "ResNet",
    "VisionTransformer",
    "WideResNet",
    "default_layers",
    "make",
    "register",
]

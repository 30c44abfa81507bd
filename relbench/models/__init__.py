"""Models behind one registry: ``relbench.models.make(name, **kwargs) -> nn.Module``.

Every classification model maps ``[B, ...]`` inputs to ``(logits [M, B, K], extras)``
and takes its layer types as constructor fields.
"""

from relbench.models.cnn import CNN
from relbench.models.lstm import LSTMClassifier
from relbench.models.mlp import MLP
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
    },
)
make = MODELS.make

__all__ = [
    "CNN",
    "MLP",
    "MODELS",
    "CifarResNet",
    "LSTMClassifier",
    "ResNet",
    "VisionTransformer",
    "WideResNet",
    "make",
]

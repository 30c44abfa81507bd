"""Models behind one registry: ``relbench.models.make(name, **kwargs) -> nn.Module``.

Every classification model maps ``[B, ...]`` inputs to ``(logits [M, B, K], extras)``
and takes its layer types as constructor fields.
"""

from relbench.models.cnn import CNN
from relbench.models.mlp import MLP
from relbench.registry import Registry

MODELS = Registry("model", {"mlp": MLP, "cnn": CNN})
make = MODELS.make

__all__ = ["CNN", "MLP", "MODELS", "make"]

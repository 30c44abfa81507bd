"""Uncertainty layers: pure-function cores and their Flax Linen modules."""

from relbench.layers.dropout import MCDropout, dropout
from relbench.layers.gaussian import GaussianHead
from relbench.layers.heads import DenseHead
from relbench.layers.heteroscedastic import HeteroscedasticHead
from relbench.layers.members import split_members, tile_members

__all__ = [
    "DenseHead",
    "GaussianHead",
    "HeteroscedasticHead",
    "MCDropout",
    "dropout",
    "split_members",
    "tile_members",
]

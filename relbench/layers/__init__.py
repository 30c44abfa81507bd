"""Uncertainty layers: pure-function cores and their Flax Linen modules."""

from relbench.layers.dropout import MCDropout, dropout
from relbench.layers.heads import DenseHead
from relbench.layers.members import split_members, tile_members

__all__ = ["DenseHead", "MCDropout", "dropout", "split_members", "tile_members"]

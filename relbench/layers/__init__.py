"""Uncertainty layers: pure-function cores and their Flax Linen modules."""

from relbench.layers.batchensemble import (
    BatchEnsembleConv,
    BatchEnsembleDense,
    ensemble_batch_norm,
)
from relbench.layers.dropout import MCDropout, dropout
from relbench.layers.heads import DenseHead
from relbench.layers.independent import independent_members
from relbench.layers.members import split_members, tile_members
from relbench.layers.rank1 import Rank1Conv, Rank1Dense

__all__ = [
    "BatchEnsembleConv",
    "BatchEnsembleDense",
    "DenseHead",
    "MCDropout",
    "Rank1Conv",
    "Rank1Dense",
    "dropout",
    "ensemble_batch_norm",
    "independent_members",
    "split_members",
    "tile_members",
]

"""Uncertainty layers: pure-function cores and their Flax Linen modules."""

from relbench.layers.batchensemble import (
    BatchEnsembleConv,
    BatchEnsembleDense,
    ensemble_batch_norm,
)
from relbench.layers.dropout import MCDropout, dropout
from relbench.layers.gaussian import GaussianHead
from relbench.layers.gaussian_process import RandomFeatureGaussianProcess
from relbench.layers.heads import DenseHead
from relbench.layers.heteroscedastic import HeteroscedasticHead
from relbench.layers.independent import independent_members
from relbench.layers.members import split_members, tile_members
from relbench.layers.random_features import RandomFourierFeatures
from relbench.layers.rank1 import Rank1Conv, Rank1Dense
from relbench.layers.spectral_norm import SpectralNormConv, SpectralNormDense

__all__ = [
    "BatchEnsembleConv",
    "BatchEnsembleDense",
    "DenseHead",
    "GaussianHead",
    "HeteroscedasticHead",
    "MCDropout",
    "RandomFeatureGaussianProcess",
    "RandomFourierFeatures",
    "Rank1Conv",
    "Rank1Dense",
    "SpectralNormConv",
    "SpectralNormDense",
    "dropout",
    "ensemble_batch_norm",
    "independent_members",
    "split_members",
    "tile_members",
]

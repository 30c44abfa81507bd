"""Uncertainty layers: pure-function cores and their Flax Linen modules.

The NNX modules over the same cores are in ``relbench.nnx``; ``state_types`` registers the
NNX variable type of every non-parameter collection (for ``nnx.bridge``).
"""

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
from relbench.layers.state_types import (
    LaplacePrecision,
    RandomFeatures,
    Rank1KL,
    SpectralStats,
    VariationalKL,
)

__all__ = [
    "BatchEnsembleConv",
    "BatchEnsembleDense",
    "DenseHead",
    "GaussianHead",
    "HeteroscedasticHead",
    "LaplacePrecision",
    "MCDropout",
    "RandomFeatureGaussianProcess",
    "RandomFeatures",
    "RandomFourierFeatures",
    "Rank1KL",
    "Rank1Conv",
    "Rank1Dense",
    "SpectralNormConv",
    "SpectralNormDense",
    "SpectralStats",
    "VariationalKL",
    "dropout",
    "ensemble_batch_norm",
    "independent_members",
    "split_members",
    "tile_members",
]

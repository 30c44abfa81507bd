"""Uncertainty layers: pure-function cores and their Flax Linen modules."""

from relbench.layers.dropout import MCDropout, dropout
from relbench.layers.gaussian import GaussianHead
from relbench.layers.gaussian_process import RandomFeatureGaussianProcess
from relbench.layers.heads import DenseHead
from relbench.layers.heteroscedastic import HeteroscedasticHead
from relbench.layers.members import split_members, tile_members
from relbench.layers.random_features import RandomFourierFeatures
from relbench.layers.spectral_norm import SpectralNormConv, SpectralNormDense

__all__ = [
    "DenseHead",
    "GaussianHead",
    "HeteroscedasticHead",
    "MCDropout",
    "RandomFeatureGaussianProcess",
    "RandomFourierFeatures",
    "SpectralNormConv",
    "SpectralNormDense",
    "dropout",
    "split_members",
    "tile_members",
]

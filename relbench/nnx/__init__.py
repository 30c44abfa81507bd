"""NNX modules of every relbench layer, over the same pure-function cores as the Linen ones.

Each module here is the NNX front-end of the Linen module of the same name in
``relbench.layers`` (the math lives there, as pure functions; these modules only hold
the variables and call them). NNX conventions throughout:

* constructors take the input size (``in_features``, like ``nnx.Linear``) and
  ``rngs: nnx.Rngs`` and create every variable eagerly;
* non-parameter state lives in variable types of its own (``relbench.layers.state_types``:
  ``SpectralStats``, ``RandomFeatures``, ``LaplacePrecision``, ``Rank1KL``,
  ``VariationalKL``), so ``nnx.state(model, SpectralStats)`` filters it;
* training vs evaluation is the ``deterministic`` attribute that ``model.train()`` /
  ``model.eval()`` set (False: training). Layers that sample in evaluation too (MC
  dropout, rank-1, variational, heteroscedastic) keep sampling in ``eval()``;
  variational layers use the posterior mean only with ``use_posterior_mean=True``;
* randomness comes only from ``nnx.Rngs`` streams: the stream given at construction
  (forked, as ``nnx.Dropout`` does) or an ``rngs`` argument of the call, which wins.

Parity with the Linen modules (same parameters and key: same outputs, gradients and
state updates) is tested in ``tests/nnx/test_parity.py``.
"""

from relbench.nnx.batchensemble import BatchEnsembleConv, BatchEnsembleDense
from relbench.nnx.dropout import MCDropout
from relbench.nnx.gaussian import GaussianHead
from relbench.nnx.gaussian_process import RandomFeatureGaussianProcess
from relbench.nnx.heads import DenseHead
from relbench.nnx.heteroscedastic import HeteroscedasticHead
from relbench.nnx.random_features import RandomFourierFeatures
from relbench.nnx.rank1 import Rank1Conv, Rank1Dense
from relbench.nnx.spectral_norm import SpectralNormConv, SpectralNormDense
from relbench.nnx.variational import (
    ConvFlipout,
    ConvReparameterization,
    DenseFlipout,
    DenseReparameterization,
    LSTMCellReparameterization,
    VariationalConv,
    VariationalDense,
)

__all__ = [
    "BatchEnsembleConv",
    "BatchEnsembleDense",
    "ConvFlipout",
    "ConvReparameterization",
    "DenseFlipout",
    "DenseHead",
    "DenseReparameterization",
    "GaussianHead",
    "HeteroscedasticHead",
    "LSTMCellReparameterization",
    "MCDropout",
    "RandomFeatureGaussianProcess",
    "RandomFourierFeatures",
    "Rank1Conv",
    "Rank1Dense",
    "SpectralNormConv",
    "SpectralNormDense",
    "VariationalConv",
    "VariationalDense",
]

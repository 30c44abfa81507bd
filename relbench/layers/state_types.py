"""NNX variable types of the layers' non-parameter collections, one per collection.

Each Linen collection a relbench layer writes has an NNX ``Variable`` type of its own,
registered under the collection's name (``flax.nnx.register_variable_name``), so that

* ``nnx.bridge.ToNNX`` of a Linen layer turns the collection into that type (and a
  call with ``mutable=True`` writes the layer's updates back into it);
* ``nnx.bridge.ToLinen`` of an NNX layer puts that type back into the collection;
* ``nnx.state(model, SpectralStats)`` filters it out of any NNX model.

The NNX layers (``relbench.nnx``) hold their state in these types.
"""

from __future__ import annotations

from flax import nnx

from relbench.layers.gaussian_process import LAPLACE
from relbench.layers.random_features import RANDOM_FEATURES
from relbench.layers.rank1 import KL_COLLECTION as RANK1_KL_COLLECTION
from relbench.layers.spectral_norm import SPECTRAL_STATS
from relbench.layers.variational import KL_COLLECTION as VARIATIONAL_KL_COLLECTION


class SpectralStats(nnx.Variable):
    """Power-iteration vectors ``u`` of spectral-normalized layers (``"spectral_stats"``)."""


class RandomFeatures(nnx.Variable):
    """Frozen frequencies and phases of random Fourier features (``"random_features"``)."""


class LaplacePrecision(nnx.Variable):
    """The GP head's Laplace precision matrix (``"laplace"``)."""


class Rank1KL(nnx.Variable):
    """``sum_m KL(q_m || p)`` of a rank-1 layer's last training call (``"kl_divergence"``)."""


class VariationalKL(nnx.Variable):
    """``KL(q(W) || p(W))`` of a variational layer's last sampled call (``"losses"``)."""


STATE_TYPES: dict[str, type[nnx.Variable]] = {
    SPECTRAL_STATS: SpectralStats,
    RANDOM_FEATURES: RandomFeatures,
    LAPLACE: LaplacePrecision,
    RANK1_KL_COLLECTION: Rank1KL,
    VARIATIONAL_KL_COLLECTION: VariationalKL,
}

for _name, _type in STATE_TYPES.items():
    # overwrite: a module reload (or a registry another library filled) keeps our types.
    nnx.register_variable_name(_name, _type, overwrite=True)

"""Each Linen layer type's NNX twin, so that a method's layer types build NNX models.

A method returns ``LayerTypes`` of Linen types (``functools.partial`` of them with its
hyperparameters, e.g. ``partial(SpectralNormDense, norm_bound=0.95)``). An NNX model
turns every one into its twin with ``nnx_type``: the partial's function is replaced by
the twin and its keyword arguments are kept (layer types among them, such as a head's
``dense`` or ``loc``, are translated too). The twins take the Linen hyperparameters by
the same names, and the input size first, as ``nnx.Linear`` does.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as linen
from flax import nnx

from relbench import layers as L
from relbench import nnx as N
from relbench.errors import UsageError
from relbench.layers import variational as V

NNX_TWINS: dict[Any, Any] = {
    linen.Dense: nnx.Linear,
    linen.Dropout: nnx.Dropout,
    linen.BatchNorm: nnx.BatchNorm,
    linen.LayerNorm: nnx.LayerNorm,
    L.DenseHead: N.DenseHead,
    L.GaussianHead: N.GaussianHead,
    L.HeteroscedasticHead: N.HeteroscedasticHead,
    L.MCDropout: N.MCDropout,
    L.RandomFeatureGaussianProcess: N.RandomFeatureGaussianProcess,
    L.RandomFourierFeatures: N.RandomFourierFeatures,
    L.SpectralNormDense: N.SpectralNormDense,
    L.SpectralNormConv: N.SpectralNormConv,
    L.BatchEnsembleDense: N.BatchEnsembleDense,
    L.BatchEnsembleConv: N.BatchEnsembleConv,
    L.Rank1Dense: N.Rank1Dense,
    L.Rank1Conv: N.Rank1Conv,
    V.VariationalDense: N.VariationalDense,
    V.VariationalConv: N.VariationalConv,
    V.DenseReparameterization: N.DenseReparameterization,
    V.DenseFlipout: N.DenseFlipout,
    V.ConvReparameterization: N.ConvReparameterization,
    V.ConvFlipout: N.ConvFlipout,
    V.LSTMCellReparameterization: N.LSTMCellReparameterization,
}


def nnx_type(layer_type: Any) -> Any:
    """The NNX twin of a Linen layer type or of a ``functools.partial`` of one."""
    if isinstance(layer_type, functools.partial):
        keywords = {
            name: nnx_type(value) if _is_layer_type(value) else value
            for name, value in layer_type.keywords.items()
        }
        return functools.partial(nnx_type(layer_type.func), *layer_type.args, **keywords)
    if layer_type in NNX_TWINS.values():
        return layer_type
    if layer_type not in NNX_TWINS:
        raise UsageError(
            f"layer type {getattr(layer_type, '__name__', layer_type)} has no NNX twin in "
            "relbench.nnx.twins.NNX_TWINS; use a Linen model, or add the twin there"
        )
    return NNX_TWINS[layer_type]


def _is_layer_type(value: Any) -> bool:
    func = value.func if isinstance(value, functools.partial) else value
    return isinstance(func, type) and issubclass(func, linen.Module | nnx.Module)

"""Every relbench layer as a (Linen module, NNX module) pair on tiny shapes, for the
parity and bridge tests."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as linen
import jax
from flax import nnx

from relbench import layers as L
from relbench import nnx as N
from relbench.layers import variational as V

D, F, K, B, M = 3, 4, 3, 4, 2  # input width, output width, classes, batch, members


@dataclasses.dataclass(frozen=True)
class Case:
    """``linen``: the Linen module; ``make_nnx(rngs)``: its NNX twin; ``inputs``: a
    function of a key; ``train_kwargs``/``eval_kwargs``: the Linen call's mode arguments
    (None: the layer has no evaluation mode); ``streams``: RNG streams its call draws
    from; ``rename``: Linen path components -> NNX attribute names."""

    linen: linen.Module
    make_nnx: Callable[[nnx.Rngs], nnx.Module]
    inputs: Callable[[jax.Array], Any]
    train_kwargs: dict = dataclasses.field(default_factory=dict)
    eval_kwargs: dict | None = None
    streams: tuple[str, ...] = ()
    rename: dict = dataclasses.field(default_factory=dict)

    @property
    def nnx_eval(self) -> dict:
        """The NNX attributes of the Linen evaluation call: variational layers' posterior
        mean is their own switch (``model.eval()`` leaves them sampling)."""
        if self.eval_kwargs == {"deterministic": True}:
            return {"use_posterior_mean": True}
        return {"deterministic": True}


def dense_inputs(key):
    return jax.random.normal(key, (B, D))


def member_inputs(key):
    return jax.random.normal(key, (M * B, D))


def image_inputs(key):
    return jax.random.normal(key, (M * B, 5, 5, 2))


CASES: dict[str, Case] = {
    "spectral_norm_dense": Case(
        L.SpectralNormDense(F, norm_bound=0.5),
        lambda r: N.SpectralNormDense(D, F, norm_bound=0.5, rngs=r),
        dense_inputs,
        {"train": True},
        {"train": False},
    ),
    "spectral_norm_conv": Case(
        L.SpectralNormConv(F, (3, 3), strides=2, norm_bound=0.5),
        lambda r: N.SpectralNormConv(2, F, (3, 3), 2, input_size=(5, 5), norm_bound=0.5, rngs=r),
        image_inputs,
        {"train": True},
        {"train": False},
    ),
    "random_fourier_features": Case(
        L.RandomFourierFeatures(8, orthogonal=True),
        lambda r: N.RandomFourierFeatures(D, 8, orthogonal=True, rngs=r),
        dense_inputs,
    ),
    "gp_head": Case(
        L.RandomFeatureGaussianProcess(K, num_features=8, normalize_input=True),
        lambda r: N.RandomFeatureGaussianProcess(
            D, K, num_features=8, normalize_input=True, rngs=r
        ),
        dense_inputs,
        {"train": True},
        {"train": False},
    ),
    "gp_head_per_class_momentum": Case(
        L.RandomFeatureGaussianProcess(K, num_features=8, precision="per_class", momentum=0.9),
        lambda r: N.RandomFeatureGaussianProcess(
            D, K, num_features=8, precision="per_class", momentum=0.9, rngs=r
        ),
        dense_inputs,
        {"train": True},
        {"train": False},
    ),
    "batchensemble_dense": Case(
        L.BatchEnsembleDense(F, ensemble_size=M),
        lambda r: N.BatchEnsembleDense(D, F, ensemble_size=M, rngs=r),
        member_inputs,
        rename={"Dense_0": "shared"},
    ),
    "batchensemble_conv": Case(
        L.BatchEnsembleConv(F, (3, 3), ensemble_size=M),
        lambda r: N.BatchEnsembleConv(2, F, (3, 3), ensemble_size=M, rngs=r),
        image_inputs,
        rename={"Conv_0": "shared"},
    ),
    "rank1_dense": Case(
        L.Rank1Dense(F, ensemble_size=M, posterior="cauchy"),
        lambda r: N.Rank1Dense(D, F, ensemble_size=M, posterior="cauchy", rngs=r),
        member_inputs,
        streams=("rank1",),
        rename={"Dense_0": "shared"},
    ),
    "rank1_conv": Case(
        L.Rank1Conv(F, (3, 3), ensemble_size=M),
        lambda r: N.Rank1Conv(2, F, (3, 3), ensemble_size=M, rngs=r),
        image_inputs,
        streams=("rank1",),
        rename={"Conv_0": "shared"},
    ),
    "dense_reparameterization": Case(
        V.DenseReparameterization(F),
        lambda r: N.DenseReparameterization(D, F, rngs=r),
        dense_inputs,
        {"deterministic": False},
        {"deterministic": True},
        streams=("variational",),
    ),
    "dense_flipout": Case(
        V.DenseFlipout(F, V.VariationalSpec(prior=V.ScaleMixturePrior())),
        lambda r: N.DenseFlipout(
            D, F, variational=V.VariationalSpec(prior=V.ScaleMixturePrior()), rngs=r
        ),
        dense_inputs,
        {"deterministic": False},
        {"deterministic": True},
        streams=("variational",),
    ),
    "conv_reparameterization": Case(
        V.ConvReparameterization(F, (3, 3), strides=2),
        lambda r: N.ConvReparameterization(2, F, (3, 3), 2, rngs=r),
        image_inputs,
        {"deterministic": False},
        {"deterministic": True},
        streams=("variational",),
    ),
    "conv_flipout": Case(
        V.ConvFlipout(F, (3, 3)),
        lambda r: N.ConvFlipout(2, F, (3, 3), rngs=r),
        image_inputs,
        {"deterministic": False},
        {"deterministic": True},
        streams=("variational",),
    ),
    "heteroscedastic_head": Case(
        L.HeteroscedasticHead(K, num_factors=2, train_mc_samples=5, test_mc_samples=7),
        lambda r: N.HeteroscedasticHead(
            D, K, num_factors=2, train_mc_samples=5, test_mc_samples=7, rngs=r
        ),
        dense_inputs,
        {"train": True},
        {"train": False},
        streams=("heteroscedastic",),
        rename={"Dense_0": "dense"},
    ),
    "heteroscedastic_head_efficient_sigmoid": Case(
        L.HeteroscedasticHead(
            K,
            link="sigmoid",
            num_factors=2,
            parameter_efficient=True,
            train_mc_samples=5,
            test_mc_samples=7,
        ),
        lambda r: N.HeteroscedasticHead(
            D,
            K,
            link="sigmoid",
            num_factors=2,
            parameter_efficient=True,
            train_mc_samples=5,
            test_mc_samples=7,
            rngs=r,
        ),
        dense_inputs,
        {"train": True},
        {"train": False},
        streams=("heteroscedastic",),
        rename={"Dense_0": "dense"},
    ),
    "gaussian_head": Case(
        L.GaussianHead(K),
        lambda r: N.GaussianHead(D, K, rngs=r),
        dense_inputs,
        {"train": True},
        {"train": False},
        rename={"Dense_0": "dense"},
    ),
    "gaussian_head_sngp": Case(
        L.GaussianHead(
            K,
            heteroscedastic=False,
            loc=functools.partial(L.RandomFeatureGaussianProcess, num_features=8),
        ),
        lambda r: N.GaussianHead(
            D,
            K,
            heteroscedastic=False,
            loc=functools.partial(N.RandomFeatureGaussianProcess, num_features=8),
            rngs=r,
        ),
        dense_inputs,
        {"train": True},
        {"train": False},
    ),
    "dense_head": Case(
        L.DenseHead(K),
        lambda r: N.DenseHead(D, K, rngs=r),
        dense_inputs,
        {"train": True},
        {"train": False},
        rename={"Dense_0": "dense"},
    ),
    "mc_dropout": Case(
        L.MCDropout(0.5),
        lambda r: N.MCDropout(0.5, rngs=r),
        dense_inputs,
        streams=("dropout",),
    ),
}

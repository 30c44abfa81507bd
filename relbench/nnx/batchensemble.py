"""NNX BatchEnsemble dense and conv layers over ``relbench.layers.batchensemble``.

Member ``m``'s weight is ``W o (r_m s_m^T)``, run as one shared call on the member-major
batch by that module's ``batchensemble`` (see its docstring and references). The shared
layer is a bias-free ``nnx.Linear`` / ``nnx.Conv`` (``shared``); the fast weights are
``alpha [M, D]``, ``gamma [M, N]`` and the biases ``bias [M, N]``. Folding ``alpha`` into
the kernel in the forward pass (the Linen layers' ``fold_alpha``) is not offered here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

from relbench.layers.batchensemble import batchensemble, random_sign_init
from relbench.nnx.initializers import LECUN_NORMAL

Initializer = Callable[..., jax.Array]


class BatchEnsembleLayer(nnx.Module):
    """What dense and conv share: the member factors and the ``batchensemble`` call.

    Subclasses build ``self.shared`` and call ``_factors``; rank-1 layers override
    ``factors``.
    """

    def _factors(
        self, in_features, out_features, ensemble_size, use_bias, bias_init, fast_weight_init, rngs
    ):
        self.ensemble_size = ensemble_size
        self.alpha = nnx.Param(fast_weight_init(rngs.params(), (ensemble_size, in_features)))
        self.gamma = nnx.Param(fast_weight_init(rngs.params(), (ensemble_size, out_features)))
        shape = (ensemble_size, out_features)
        self.bias = nnx.Param(bias_init(rngs.params(), shape)) if use_bias else None

    def factors(self, inputs: jax.Array, rngs) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """``alpha [M, D]``, ``gamma [M, N]`` and ``bias [M, N]`` (or None)."""
        del inputs, rngs  # BatchEnsemble's factors are point estimates.
        bias = None if self.bias is None else self.bias[...]
        return self.alpha[...], self.gamma[...], bias

    def __call__(self, inputs: jax.Array, *, rngs=None) -> jax.Array:
        alpha, gamma, bias = self.factors(inputs, rngs)
        apply = functools.partial(
            apply_with_kernel, nnx.graphdef(self.shared), nnx.state(self.shared)
        )
        return batchensemble(inputs, apply, self.shared.kernel[...], alpha, gamma, bias)


def apply_with_kernel(graphdef, state, kernel: jax.Array, inputs: jax.Array) -> jax.Array:
    """The bias-free NNX layer ``(graphdef, state)`` applied to ``inputs`` with ``kernel``."""
    state = nnx.State({**state, "kernel": state["kernel"].replace(kernel)})
    return nnx.merge(graphdef, state)(inputs)


class BatchEnsembleDense(BatchEnsembleLayer):
    """A dense layer with M BatchEnsemble members on the member-major batch."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        ensemble_size: int = 4,
        use_bias: bool = True,
        kernel_init: Initializer = LECUN_NORMAL,
        bias_init: Initializer = nnx.initializers.zeros,
        fast_weight_init: Initializer = random_sign_init,
        rngs: nnx.Rngs,
    ):
        self.shared = nnx.Linear(
            in_features, out_features, use_bias=False, kernel_init=kernel_init, rngs=rngs
        )
        self._factors(
            in_features, out_features, ensemble_size, use_bias, bias_init, fast_weight_init, rngs
        )


class BatchEnsembleConv(BatchEnsembleLayer):
    """A 2-D convolution with M BatchEnsemble members on the member-major batch."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        padding: Any = "SAME",
        ensemble_size: int = 4,
        use_bias: bool = True,
        kernel_init: Initializer = LECUN_NORMAL,
        bias_init: Initializer = nnx.initializers.zeros,
        fast_weight_init: Initializer = random_sign_init,
        rngs: nnx.Rngs,
    ):
        self.shared = nnx.Conv(
            in_features,
            out_features,
            tuple(kernel_size),
            strides=strides,
            padding=padding,
            use_bias=False,
            kernel_init=kernel_init,
            rngs=rngs,
        )
        self._factors(
            in_features, out_features, ensemble_size, use_bias, bias_init, fast_weight_init, rngs
        )

"""NNX spectral-normalized dense and conv layers over ``relbench.layers.spectral_norm``.

The math (power iteration on the layer's operator, the soft bound
``W / max(1, sigma / c)``) is that module's ``spectral_norm_estimate`` and
``bound_kernel``; see its docstring for the derivation and references. ``u`` is a
``SpectralStats`` variable: updated in training (``deterministic=False``), read in
evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from relbench.errors import UsageError
from relbench.layers.spectral_norm import (
    _conv_dimension_numbers,
    _normalize,
    _padding,
    _tuple,
    bound_kernel,
    check_settings,
    spectral_norm_estimate,
)
from relbench.layers.state_types import SpectralStats
from relbench.nnx.initializers import LECUN_NORMAL, ZEROS

Initializer = Callable[..., jax.Array]

#: The constructor arguments dense and conv pass on to ``_SpectralNormLayer._setup``.
SHARED = (
    "use_bias",
    "norm_bound",
    "num_iterations",
    "deterministic",
    "kernel_init",
    "bias_init",
    "rngs",
)


class _SpectralNormLayer(nnx.Module):
    """What dense and conv share: the kernel, bias, ``u`` and the bounded kernel."""

    def _setup(
        self,
        kernel_shape: tuple[int, ...],
        output_shape: tuple[int, ...],
        *,
        use_bias,
        norm_bound,
        num_iterations,
        deterministic,
        kernel_init,
        bias_init,
        rngs,
    ):
        """The variables, from the constructor's arguments named in ``SHARED``."""
        check_settings(norm_bound, num_iterations)
        self.norm_bound, self.num_iterations = norm_bound, num_iterations
        self.deterministic = deterministic
        self.kernel = nnx.Param(kernel_init(rngs.params(), kernel_shape))
        self.bias = nnx.Param(bias_init(rngs.params(), kernel_shape[-1:])) if use_bias else None
        self.u = SpectralStats(_normalize(jax.random.normal(rngs.params(), output_shape)))

    def bounded_kernel(self, operator, input_like: jax.ShapeDtypeStruct) -> jax.Array:
        """The kernel bounded by the estimate from ``u``; updates ``u`` in training."""
        kernel = self.kernel[...]
        steps = 0 if self.deterministic else self.num_iterations
        sigma, new_u = spectral_norm_estimate(
            lambda x: operator(x, kernel), input_like, self.u[...], steps
        )
        if not self.deterministic:
            self.u[...] = new_u
        return bound_kernel(kernel, sigma, self.norm_bound)

    def add_bias(self, y: jax.Array) -> jax.Array:
        return y if self.bias is None else y + self.bias[...]


class SpectralNormDense(_SpectralNormLayer):
    """``nnx.Linear`` whose kernel is divided by ``max(1, sigma / norm_bound)``.

    Args:
      in_features, out_features: as in ``nnx.Linear``.
      norm_bound: the bound ``c`` on the spectral norm.
      num_iterations: power-iteration steps per training call.
      deterministic: evaluation mode (no update of ``u``); ``model.train()`` / ``eval()``
        set it.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        norm_bound: float = 1.0,
        num_iterations: int = 1,
        deterministic: bool = False,
        kernel_init: Initializer = LECUN_NORMAL,
        bias_init: Initializer = ZEROS,
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        arguments = locals()
        self._setup(
            (in_features, out_features), (1, out_features), **{k: arguments[k] for k in SHARED}
        )

    def __call__(self, inputs: jax.Array) -> jax.Array:
        example = jax.ShapeDtypeStruct((1, self.in_features), self.kernel.dtype)
        return self.add_bias(inputs @ self.bounded_kernel(lambda x, k: x @ k, example))


class SpectralNormConv(_SpectralNormLayer):
    """``nnx.Conv`` bounded by the spectral norm of the convolution *operator*.

    ``u`` has the layer's output shape for one example, so the constructor takes the
    spatial size of the inputs (``input_size``) that the Linen layer reads off its
    first input.

    Args:
      in_features, out_features, kernel_size, strides, padding, kernel_dilation,
        feature_group_count, use_bias: as in ``nnx.Conv``.
      input_size: the spatial size of the inputs, e.g. ``(28, 28)``.
      norm_bound, num_iterations, deterministic: as in ``SpectralNormDense``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        input_size: Sequence[int],
        padding: str | int | Sequence = "SAME",
        kernel_dilation: int | Sequence[int] = 1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        norm_bound: float = 1.0,
        num_iterations: int = 1,
        deterministic: bool = False,
        kernel_init: Initializer = LECUN_NORMAL,
        bias_init: Initializer = ZEROS,
        rngs: nnx.Rngs,
    ):
        arguments = locals()
        kernel_size = tuple(kernel_size)
        rank = len(kernel_size)
        if len(tuple(input_size)) != rank:
            raise UsageError(
                f"SpectralNormConv with a {rank}-D kernel needs a {rank}-D input_size, "
                f"got {tuple(input_size)}"
            )
        if in_features % feature_group_count:
            raise UsageError(
                f"{in_features} input channels are not divisible by feature_group_count "
                f"{feature_group_count}"
            )
        self.window_strides = _tuple(strides, rank)
        self.padding = _padding(padding, rank)
        self.rhs_dilation = _tuple(kernel_dilation, rank)
        self.feature_group_count = feature_group_count
        kernel_shape = (*kernel_size, in_features // feature_group_count, out_features)
        self.example_shape = (1, *input_size, in_features)
        example = jax.ShapeDtypeStruct(self.example_shape, jnp.float32)
        kernel_like = jax.ShapeDtypeStruct(kernel_shape, jnp.float32)
        output_shape = jax.eval_shape(self.conv, example, kernel_like).shape
        self._setup(kernel_shape, output_shape, **{k: arguments[k] for k in SHARED})

    def conv(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(
            x,
            kernel,
            window_strides=self.window_strides,
            padding=self.padding,
            rhs_dilation=self.rhs_dilation,
            dimension_numbers=_conv_dimension_numbers(len(self.window_strides)),
            feature_group_count=self.feature_group_count,
        )

    def __call__(self, inputs: jax.Array) -> jax.Array:
        if inputs.shape[1:] != self.example_shape[1:]:
            expected = ", ".join(map(str, self.example_shape[1:]))
            raise UsageError(
                f"SpectralNormConv was built for inputs [N, {expected}] (input_size, "
                f"in_features), got shape {inputs.shape}; build it with this input_size"
            )
        example = jax.ShapeDtypeStruct(self.example_shape, self.kernel.dtype)
        return self.add_bias(self.conv(inputs, self.bounded_kernel(self.conv, example)))

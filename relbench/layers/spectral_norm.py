"""Bounded spectral normalization of dense and convolutional kernels.

A layer ``y = A x`` with linear operator ``A`` (a dense kernel, or a convolution with its
stride, padding and dilation) is made at most ``c``-Lipschitz by rescaling its kernel
``W`` with an estimate of the largest singular value ``sigma = ||A||_2``:

    W_sn = W / max(1, sigma / c).

This is a *soft bound* [2]: a kernel whose norm is already below ``c`` is left exactly as
it is, unlike the normalization to ``sigma = 1`` of [1]. Bounding every hidden layer keeps
a residual network bi-Lipschitz, so distances in its feature space track distances in
its input space, which is what makes SNGP distance-aware [2].

``sigma`` comes from power iteration on the operator itself [1, 3]. With ``u`` a unit
vector in the output space and ``A^T`` the adjoint (``jax.linear_transpose``),

    v <- A^T u / ||A^T u||,    u <- A v / ||A v||,    sigma = u^T A v.

For a dense kernel ``A^T u = W u``; for a convolution ``A^T`` is the transposed
convolution, and ``u`` has the layer's output shape for one example, so ``sigma`` is the
norm of the convolution *operator* on this input size (with the real stride and
padding) and not the norm of the kernel reshaped into a matrix, which over- or
under-estimates it [3]. ``u`` persists between steps in a non-parameter collection
(``"spectral_stats"``), so one iteration per training step suffices [1]. ``u`` and ``v``
are held fixed (stop-gradient) when differentiating, so the gradient reaches ``W``
through ``sigma = u^T A v``, as in [1]. The bounded kernel is computed on the fly in
every call and never written back into the parameters.

In training (``train=True``) the layer runs ``num_iterations`` steps and stores the new
``u``; in evaluation it estimates ``sigma`` from the stored ``u`` and changes nothing.

Under mixed precision (``dtype``, see ``relbench.layers.mixed_precision``) the power
iteration, ``sigma`` and the bounded kernel are computed from the float32 parameters,
and only the layer's own product with its inputs runs in ``dtype``.

References:
  [1] Miyato, Kataoka, Koyama, Yoshida. Spectral Normalization for Generative
      Adversarial Networks. ICLR 2018. https://arxiv.org/abs/1802.05957
  [2] Liu, Lin, Padhy, Tran, Bedrax-Weiss, Lakshminarayanan. Simple and Principled
      Uncertainty Estimation with Deterministic Deep Learning via Distance Awareness.
      NeurIPS 2020. https://arxiv.org/abs/2006.10108
  [3] Gouk, Frank, Pfahringer, Cree. Regularisation of Neural Networks by Enforcing
      Lipschitz Continuity. Machine Learning 2021. https://arxiv.org/abs/1804.04368
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from relbench.errors import UsageError

SPECTRAL_STATS = "spectral_stats"

LinearOperator = Callable[[jax.Array], jax.Array]


def _normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x * lax.rsqrt(jnp.maximum(jnp.sum(x * x), eps))


def spectral_norm_estimate(
    operator: LinearOperator,
    input_like: jax.ShapeDtypeStruct,
    u: jax.Array,
    num_iterations: int,
) -> tuple[jax.Array, jax.Array]:
    """Power iteration for the largest singular value of a linear operator.

    Args:
      operator: a linear function of one array shaped like ``input_like``.
      input_like: the shape and dtype of the operator's input.
      u: the current estimate of the top left singular vector (output-shaped).
      num_iterations: power-iteration steps to run from ``u`` (0: estimate only).

    Returns:
      ``(sigma, u)``: the estimate ``u^T A v`` (differentiable w.r.t. what ``operator``
      closes over; ``u`` and ``v`` are constants) and the updated, stop-gradient ``u``.
    """
    transpose = jax.linear_transpose(operator, input_like)

    def adjoint(w):
        (x,) = transpose(w)
        return x

    for _ in range(num_iterations):
        u = _normalize(operator(_normalize(adjoint(u))))
    u = lax.stop_gradient(u)
    v = lax.stop_gradient(_normalize(adjoint(u)))
    sigma = jnp.sum(u * operator(v))
    return sigma, u


def bound_kernel(kernel: jax.Array, sigma: jax.Array, norm_bound: float) -> jax.Array:
    """``kernel / max(1, sigma / norm_bound)``: unchanged when already within the bound."""
    return kernel / jnp.maximum(1.0, sigma / norm_bound)


def check_settings(norm_bound: float, num_iterations: int) -> None:
    """One UsageError line for a bound or an iteration count that cannot work."""
    if not norm_bound > 0:
        raise UsageError(f"spectral norm_bound must be > 0, got {norm_bound}")
    if num_iterations < 1:
        raise UsageError(f"spectral num_iterations must be >= 1, got {num_iterations}")


def _train_flag(module: nn.Module, train: bool | None) -> bool:
    """Checks the module's settings; ``train`` from the field or the call, not both."""
    check_settings(module.norm_bound, module.num_iterations)
    return nn.merge_param("train", module.train, train)


def _add_bias(module: nn.Module, y: jax.Array) -> jax.Array:
    if not module.use_bias:
        return y
    bias = module.param("bias", module.bias_init, (module.features,), module.param_dtype)
    return y + bias.astype(y.dtype)


def _compute(module: nn.Module, inputs: jax.Array, kernel: jax.Array):
    """Inputs and the bounded (float32) kernel in the module's compute dtype."""
    return nn.dtypes.promote_dtype(inputs, kernel, dtype=module.dtype)


def _init_u(module: nn.Module, shape: tuple[int, ...], dtype) -> nn.Variable:
    """The persistent power-iteration vector, a random unit vector drawn at init."""
    return module.variable(
        SPECTRAL_STATS,
        "u",
        lambda: _normalize(jax.random.normal(module.make_rng("params"), shape, dtype)),
    )


def _bounded(
    module: nn.Module,
    kernel: jax.Array,
    operator: Callable[[jax.Array, jax.Array], jax.Array],
    input_like: jax.ShapeDtypeStruct,
    output_shape: tuple[int, ...],
    train: bool,
) -> jax.Array:
    """Runs power iteration for ``module`` (stored ``u``), returns the bounded kernel."""
    u = _init_u(module, output_shape, kernel.dtype)
    steps = module.num_iterations if train else 0
    sigma, new_u = spectral_norm_estimate(lambda x: operator(x, kernel), input_like, u.value, steps)
    if train:
        u.value = new_u
    return bound_kernel(kernel, sigma, module.norm_bound)


class SpectralNormDense(nn.Module):
    """``nn.Dense`` whose kernel is divided by ``max(1, sigma / norm_bound)``.

    Takes the fields of ``nn.Dense`` it needs, so models accept it as their ``dense``
    layer type. ``train`` may be given as a field (models bind it, see
    ``relbench.models.classifier.bind_train``) or at call time, not both.

    Attributes:
      features: output width.
      norm_bound: the bound ``c`` on the spectral norm.
      num_iterations: power-iteration steps per training call.
      dtype: the compute dtype of the product (``None``: the promoted input dtype).
      param_dtype: the dtype of the kernel, the bias and ``u``.
    """

    features: int
    use_bias: bool = True
    norm_bound: float = 1.0
    num_iterations: int = 1
    train: bool | None = None
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool | None = None) -> jax.Array:
        train = _train_flag(self, train)
        in_features = inputs.shape[-1]
        kernel = self.param(
            "kernel", self.kernel_init, (in_features, self.features), self.param_dtype
        )
        kernel = _bounded(
            self,
            kernel,
            lambda x, k: x @ k,
            jax.ShapeDtypeStruct((1, in_features), kernel.dtype),
            (1, self.features),
            train,
        )
        inputs, kernel = _compute(self, inputs, kernel)
        return _add_bias(self, inputs @ kernel)


def _conv_dimension_numbers(rank: int) -> lax.ConvDimensionNumbers:
    """Channels-last inputs/outputs (``N, *spatial, C``) and ``(*spatial, I, O)`` kernels."""
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, rank + 1, *range(1, rank + 1)),
        rhs_spec=(rank + 1, rank, *range(rank)),
        out_spec=(0, rank + 1, *range(1, rank + 1)),
    )


def _tuple(value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    return (value,) * rank if isinstance(value, int) else tuple(value)


def _padding(padding, rank: int):
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID", "SAME_LOWER"):
            raise UsageError(
                f"SpectralNormConv does not support padding '{padding}'; use SAME, VALID, "
                "SAME_LOWER, an int or a sequence of (low, high) pairs"
            )
        return padding.upper()
    if isinstance(padding, int):
        return ((padding, padding),) * rank
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


class SpectralNormConv(nn.Module):
    """``nn.Conv`` whose kernel is bounded by the spectral norm of the conv *operator*.

    Power iteration runs on the convolution with this layer's stride, padding, dilation
    and groups, on the spatial size of the inputs it sees (one example), so
    ``||conv||_2 <= norm_bound`` holds for the map the layer actually computes.

    Attributes:
      features: output channels.
      kernel_size: spatial size of the kernel.
      strides, padding, kernel_dilation, feature_group_count: as in ``nn.Conv``
        (padding: ``"SAME"``, ``"VALID"``, ``"SAME_LOWER"``, int or (low, high) pairs).
      norm_bound: the bound ``c`` on the operator norm.
      num_iterations: power-iteration steps per training call.
      dtype: the compute dtype of the convolution (``None``: the promoted input dtype).
      param_dtype: the dtype of the kernel, the bias and ``u``.
    """

    features: int
    kernel_size: Sequence[int]
    strides: int | Sequence[int] = 1
    padding: str | int | Sequence = "SAME"
    kernel_dilation: int | Sequence[int] = 1
    feature_group_count: int = 1
    use_bias: bool = True
    norm_bound: float = 1.0
    num_iterations: int = 1
    train: bool | None = None
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool | None = None) -> jax.Array:
        train = _train_flag(self, train)
        kernel_size = tuple(self.kernel_size)
        rank = len(kernel_size)
        if inputs.ndim != rank + 2:
            raise UsageError(
                f"SpectralNormConv with a {rank}-D kernel needs [N, *spatial, C] inputs of "
                f"rank {rank + 2}, got shape {inputs.shape}"
            )
        in_features = inputs.shape[-1]
        if in_features % self.feature_group_count:
            raise UsageError(
                f"{in_features} input channels are not divisible by feature_group_count "
                f"{self.feature_group_count}"
            )
        kernel_shape = (*kernel_size, in_features // self.feature_group_count, self.features)
        kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)

        def conv(x, k):
            return lax.conv_general_dilated(
                x,
                k,
                window_strides=_tuple(self.strides, rank),
                padding=_padding(self.padding, rank),
                rhs_dilation=_tuple(self.kernel_dilation, rank),
                dimension_numbers=_conv_dimension_numbers(rank),
                feature_group_count=self.feature_group_count,
            )

        example = jax.ShapeDtypeStruct((1, *inputs.shape[1:]), kernel.dtype)
        output_shape = jax.eval_shape(conv, example, kernel).shape
        kernel = _bounded(self, kernel, conv, example, output_shape, train)
        return _add_bias(self, conv(*_compute(self, inputs, kernel)))

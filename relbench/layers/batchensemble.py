"""BatchEnsemble [1]: M members that share one slow weight and own rank-1 fast weights.

Member ``m`` of a BatchEnsemble layer has the effective weight

    W_m = W o (r_m s_m^T),

the elementwise product of the shared slow weight ``W`` (``[D, N]`` for a dense layer,
``[kh, kw, C, N]`` for a convolution, ``D = C`` input channels) and the outer product
of its fast weights ``r_m`` (``alpha``, ``[D]``, input side) and ``s_m`` (``gamma``,
``[N]``, output side), plus its own bias ``b_m``. Because the shared map ``L_W`` is
linear in its input channels and in its output channels,

    L_{W_m}(x) + b_m = L_W(x o r_m) o s_m + b_m,

so all members run as ONE dense or conv call on the member-major batch: scale each
member's rows by ``r_m``, apply ``W``, scale by ``s_m``, add ``b_m``. The parameters grow
by ``M (D + 2N)`` instead of ``(M - 1) D N``.

The gradient costs what a single network's does on the tiled batch, plus elementwise
products. Differentiating ``L_W(x o r_m)`` directly would need the input gradient
``L_W^T(g)`` for ``r_m``'s gradient, which the first layer of a network (its input is
data) never needs otherwise: one more product the size of the layer's (an MLP
3072-512-512-10 step had 1.4 times a deterministic one's FLOPs). ``scaled_product``
therefore differentiates the folded form ``L_{W o r_m}(x_m)`` wherever its input
carries no tangent: each member's kernel gradient ``G_m`` gives both
``dW = sum_m G_m o r_m`` and ``dr_m = sum G_m o W``. Its forward pass stays the one
shared call. A layer may also fold ``r_m`` into the kernel in the forward pass, one
call per member (its ``fold_alpha`` field; see ``BatchEnsembleConv``).

Batch layout (see ``layers.members``): the input has ``M * B`` rows, member-major, rows
``[m * B, (m + 1) * B)`` belong to member ``m``. Whether those rows are the same B
examples for every member (*tiled*, the default in training and always at test) or
different examples (*split*) is the model's and the method's choice; the layer only
needs ``M`` to divide the number of rows.

Fast weights start near 1 so that every member starts as a perturbation of ``W``:
random signs (+-1, the choice of [1]'s follow-ups and of rank-1 BNNs [2]) or
``N(1, stddev^2)``.

References:
  [1] Wen, Tran, Ba. BatchEnsemble: An Alternative Approach to Efficient Ensemble and
      Lifelong Learning. ICLR 2020. https://arxiv.org/abs/2002.06715
  [2] Dusenberry et al. Efficient and Scalable Bayesian Neural Nets with Rank-1
      Factors. ICML 2020. https://arxiv.org/abs/2005.07186
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from relbench.errors import UsageError
from relbench.layers.independent import independent_members, merge_members
from relbench.layers.members import split_members, tile_members

Initializer = Callable[..., jax.Array]
ModuleDef = Any


def random_sign_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Each entry +1 or -1 with probability 1/2."""
    return jax.random.rademacher(key, tuple(shape), dtype)


def gaussian_init(stddev: float) -> Initializer:
    """Entries drawn from ``N(1, stddev^2)``."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return 1.0 + stddev * jax.random.normal(key, tuple(shape), dtype)

    return init


def fast_weight_initializer(kind: str, stddev: float) -> Initializer:
    """``"random_sign"`` or ``"gaussian"`` (with ``stddev``) by name, for method configs."""
    if kind == "random_sign":
        return random_sign_init
    if kind == "gaussian":
        return gaussian_init(stddev)
    raise UsageError(f"unknown fast_weight_init '{kind}'; choose random_sign or gaussian")


def member_factor(factor: jax.Array, ndim: int) -> jax.Array:
    """Per-member ``[M, C]`` or per-example ``[M, B, C]`` factors, shaped to broadcast
    against member-split activations ``[M, B, ..., C]`` of rank ``ndim``."""
    if factor.ndim == 2:
        factor = factor[:, None]  # [M, C] -> [M, 1, C]: the same for every row
    return factor.reshape(factor.shape[:2] + (1,) * (ndim - 3) + factor.shape[2:])


LinearMap = Callable[[jax.Array, jax.Array], jax.Array]


def check_rows(inputs: jax.Array, members: int) -> None:
    """One UsageError line unless the batch divides into ``members`` members."""
    if inputs.shape[0] % members:
        raise UsageError(
            f"a batch of {inputs.shape[0]} rows cannot be laid out as {members} members; "
            f"use a batch size divisible by ensemble_size={members}"
        )


def scale_rows(inputs: jax.Array, factor: jax.Array) -> jax.Array:
    """``x o factor_m`` on the member-major batch: ``factor`` is ``[M, C]`` (per member)
    or ``[M, B, C]`` (per row), ``inputs`` ``[M * B, ..., C]``."""
    x = split_members(inputs, factor.shape[0])  # [M*B, ..., C] -> [M, B, ..., C]
    return merge_members(x * member_factor(factor, x.ndim))


def output_factors(y: jax.Array, gamma: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``y o gamma_m + b_m`` on the member-major batch."""
    y = split_members(y, gamma.shape[0])  # [M*B, ..., N] -> [M, B, ..., N]
    y = y * member_factor(gamma, y.ndim)
    if bias is not None:
        y = y + member_factor(bias, y.ndim)
    return merge_members(y)  # [M, B, ..., N] -> [M*B, ..., N]


def _input_axis_factor(factor: jax.Array, kernel: jax.Array) -> jax.Array:
    """``[M, D]`` -> ``[M, 1, ..., 1, D, 1]``: one per member, on the kernel's input axis."""
    spatial = (1,) * (kernel.ndim - 2)
    return factor.reshape((factor.shape[0], *spatial, factor.shape[1], 1))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def scaled_product(
    shared: LinearMap, kernel: jax.Array, inputs: jax.Array, alpha: jax.Array
) -> jax.Array:
    """``shared(kernel, x o alpha_m)`` on the member-major batch (pure function).

    Its derivative (a custom JVP, so forward and reverse mode both hold) has two
    forms. Where ``inputs`` carries a tangent, the direct one, ``shared(dW, x o r) +
    shared(W, dx o r + x o dr)``. Where it carries none (a network's input), the
    folded one, member by member ``shared(dW o r_m + W o dr_m, x_m)``, whose transpose
    takes ``dW`` and ``dr`` from the members' kernel gradients and never computes the
    input gradient. Per-row factors (``[M, B, D]``) always take the direct form.

    Args:
      shared: ``shared(kernel, x)``, the shared bias-free dense or conv map, linear in
        each argument.
      kernel: ``[..., D, N]``.
      inputs: ``[M * B, ..., D]`` member-major activations.
      alpha: ``[M, D]`` input fast weights (or ``[M, B, D]``, one per row).
    """
    return shared(kernel, scale_rows(inputs, alpha))


def _scaled_product_jvp(shared, primals, tangents):
    kernel, inputs, alpha = primals
    # Only whether the inputs carry a tangent matters; other symbolic zeros become zeros.
    inputs_fixed = isinstance(tangents[1], SymbolicZero)
    d_kernel, d_inputs, d_alpha = (
        jnp.zeros_like(p) if isinstance(t, SymbolicZero) else t
        for p, t in zip(primals, tangents, strict=True)
    )
    out = scaled_product(shared, kernel, inputs, alpha)
    if inputs_fixed and alpha.ndim == 2:  # member m: shared(dW o r_m + W o dr_m, x_m)
        r, dr = _input_axis_factor(alpha, kernel), _input_axis_factor(d_alpha, kernel)
        x = split_members(inputs, alpha.shape[0])
        members = [shared(d_kernel * r[m] + kernel * dr[m], x[m]) for m in range(alpha.shape[0])]
        return out, merge_members(jnp.stack(members))
    d_scaled = scale_rows(d_inputs, alpha) + scale_rows(inputs, d_alpha)
    return out, shared(d_kernel, scale_rows(inputs, alpha)) + shared(kernel, d_scaled)


scaled_product.defjvp(_scaled_product_jvp, symbolic_zeros=True)


def batchensemble(
    inputs: jax.Array,
    shared: LinearMap,
    kernel: jax.Array,
    alpha: jax.Array,
    gamma: jax.Array,
    bias: jax.Array | None,
) -> jax.Array:
    """``shared(kernel, x o alpha_m) o gamma_m + b_m`` on the member-major batch (pure
    function; ``scaled_product`` differentiates it).

    Args:
      inputs: ``[M * B, ..., D]`` member-major activations.
      shared: ``shared(kernel, x)``, the shared bias-free linear map (a dense or conv
        with the given kernel), channels last.
      kernel: the shared kernel ``[..., D, N]``.
      alpha: ``[M, D]`` input fast weights (or ``[M, B, D]``, one per row).
      gamma: ``[M, N]`` output fast weights (or ``[M, B, N]``).
      bias: ``[M, N]`` per-member biases, or None.

    Returns:
      ``[M * B, ..., N]``.
    """
    check_rows(inputs, alpha.shape[0])
    return output_factors(scaled_product(shared, kernel, inputs, alpha), gamma, bias)


def batchensemble_folded(
    inputs: jax.Array,
    shared: LinearMap,
    kernel: jax.Array,
    alpha: jax.Array,
    gamma: jax.Array,
    bias: jax.Array | None,
) -> jax.Array:
    """``batchensemble`` with ``alpha_m`` folded into member ``m``'s kernel.

    ``L_W(x o r_m) = L_{W o r_m}(x)``: member ``m``'s rows go through the shared map
    with the kernel ``W o r_m`` (input channels scaled), one call per member, in the
    forward pass as well as in the backward one.

    Args: as ``batchensemble``'s, with ``alpha`` per member only (``[M, D]``).
    """
    check_rows(inputs, alpha.shape[0])
    x = split_members(inputs, alpha.shape[0])  # [M*B, ..., D] -> [M, B, ..., D]
    r = _input_axis_factor(alpha, kernel)
    y = jnp.stack([shared(kernel * r[m], x[m]) for m in range(alpha.shape[0])])
    return output_factors(merge_members(y), gamma, bias)


def apply_with_kernel(layer: nn.Module, kernel: jax.Array, inputs: jax.Array) -> jax.Array:
    """The unbound, bias-free Flax ``layer`` applied to ``inputs`` with ``kernel``."""
    return layer.apply({"params": {"kernel": kernel}}, inputs)


def effective_kernel(kernel: jax.Array, alpha: jax.Array, gamma: jax.Array) -> jax.Array:
    """Every member's full weight ``W o (r_m s_m^T)``: ``[..., D, N]`` -> ``[M, ..., D, N]``.

    For inspection and tests; the layers never build it.
    """
    spatial = (1,) * (kernel.ndim - 2)
    s = gamma.reshape((gamma.shape[0], *spatial, 1, gamma.shape[1]))  # [M, N] -> [M, ..., 1, N]
    return kernel[None] * _input_axis_factor(alpha, kernel) * s


def init_rows(module: nn.Module, inputs: jax.Array, members: int) -> jax.Array:
    """At initialization only shapes matter: a batch that does not divide into members
    (the loop's one-row dummy under the split layout) is tiled so that it does."""
    if module.is_initializing() and inputs.shape[0] % members:
        return tile_members(inputs, members)
    return inputs


class BatchEnsembleLayer(nn.Module):
    """What BatchEnsemble dense and conv share: ``__call__`` runs ``batchensemble`` on
    the shared layer (``shared_layer``) and the member factors (``factors``).

    Subclasses define the fields ``features``, ``ensemble_size``, ``use_bias``,
    ``bias_init``, ``fast_weight_init``, ``fold_alpha`` (fold per-member ``alpha``
    into the kernel in the forward pass too, ``batchensemble_folded``),
    ``dtype`` (the compute dtype; ``None``: the promoted input dtype) and
    ``param_dtype``, and the method ``shared_layer``.
    """

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        inputs = init_rows(self, inputs, self.ensemble_size)
        shared, factors = self.shared_layer(), self.factors(inputs)
        # The factors (float32 parameters, or samples of them) in the compute dtype.
        inputs, alpha, gamma, bias = nn.dtypes.promote_dtype(inputs, *factors, dtype=self.dtype)
        if self.is_initializing():
            shared(inputs)  # creates the shared kernel
        kernel = shared.variables["params"]["kernel"]
        apply = functools.partial(apply_with_kernel, shared.clone(parent=None))
        if self.fold_alpha and alpha.ndim == 2:
            return batchensemble_folded(inputs, apply, kernel, alpha, gamma, bias)
        return batchensemble(inputs, apply, kernel, alpha, gamma, bias)

    def factors(self, inputs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """``alpha [M, D]``, ``gamma [M, N]`` and ``bias [M, N]`` (or None)."""
        members, features, dtype = self.ensemble_size, self.features, self.param_dtype
        alpha = self.param("alpha", self.fast_weight_init, (members, inputs.shape[-1]), dtype)
        gamma = self.param("gamma", self.fast_weight_init, (members, features), dtype)
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (members, features), dtype)
        return alpha, gamma, bias


class BatchEnsembleDense(BatchEnsembleLayer):
    """A dense layer with M BatchEnsemble members on the member-major batch.

    Parameters: ``Dense_0/kernel [D, N]`` (shared), ``alpha [M, D]``, ``gamma [M, N]``,
    ``bias [M, N]``. ``alpha`` scales the activations (``fold_alpha=False``): M
    products with M folded kernels are slower on XLA:CPU than one product with the
    shared kernel. On a network's input the step still costs what a deterministic
    network's does on the tiled batch (``scaled_product``): an MLP 3072-512-512-10
    with M = 4 measured 1.19-1.60 times a deterministic step on the tiled batch at 64
    examples per member (median 1.28 of 10 runs; 1.33-1.44 when ``alpha``'s gradient
    took the input gradient) and 1.17-1.25 at 128 (1.35-1.43 before), on two shared
    CPU cores (``benchmarks/ensembles.py --model mlp [--batch-size 128]``).
    """

    features: int
    ensemble_size: int = 4
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros
    fast_weight_init: Initializer = random_sign_init
    fold_alpha: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def shared_layer(self) -> nn.Module:
        return nn.Dense(
            self.features,
            use_bias=False,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )


class BatchEnsembleConv(BatchEnsembleLayer):
    """A 2-D convolution with M BatchEnsemble members on the member-major batch.

    Takes ``flax.linen.Conv``'s leading arguments (``features, kernel_size``) so that
    models accept it as their ``conv`` field. Parameters: ``Conv_0/kernel
    [kh, kw, C, N]`` (shared), ``alpha [M, C]``, ``gamma [M, N]``, ``bias [M, N]``.

    ``fold_alpha`` picks how per-member ``alpha`` is applied in the forward pass:
    scaling the activations (False, the default: one convolution on M * B rows) or
    folded into the kernel (``batchensemble_folded``, M convolutions on B rows each).
    Either way the first convolution of a network takes ``alpha``'s gradient from the
    members' kernel gradients (``scaled_product``). Folding still pays on XLA:CPU: a
    small CNN's BatchEnsemble step measured 0.83-0.93 times a deterministic step on
    the tiled batch folded and 0.95-1.00 unfolded (1.10-1.22 before the first layer
    skipped the input gradient; ``benchmarks/ensembles.py --model cnn
    [--no-fold-conv-alpha]``). On an H200 the folded step measured 1.31 times the
    tiled one.
    """

    features: int
    kernel_size: Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    ensemble_size: int = 4
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros
    fast_weight_init: Initializer = random_sign_init
    fold_alpha: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def shared_layer(self) -> nn.Module:
        return nn.Conv(
            self.features,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            use_bias=False,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )


def ensemble_batch_norm(ensemble_size: int, norm: ModuleDef = nn.BatchNorm) -> ModuleDef:
    """Batch normalization with per-member scale, bias and statistics.

    The batch norm type ``norm`` (``flax.linen.BatchNorm``, or a partial of it with its
    momentum set) with independent members (``layers.independent``): member ``m``
    normalizes its own rows with its own batch statistics and running averages and
    applies its own ``scale`` and ``bias`` (variables ``[M, C]``). Use it as a model's
    ``layers.norm``; it takes ``BatchNorm``'s constructor arguments.
    """
    return independent_members(norm, ensemble_size)

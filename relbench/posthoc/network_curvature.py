"""The generalized Gauss-Newton (GGN) of a network's parameters, per layer, for the
full-network and subnetwork Laplace approximation (``relbench.posthoc.laplace``).

For a network ``f(x; theta)`` with logits ``[K]`` and the softmax likelihood, the GGN is

    H = sum_n J_n^T Lambda_n J_n,    Lambda_n = diag(p_n) - p_n p_n^T = L_n L_n^T,

with ``J_n = d f(x_n) / d theta`` and the exact square root
``L_n = diag(sqrt(p_n)) - p_n sqrt(p_n)^T`` (``L L^T = diag(p) - p p^T`` because
``sum p = 1``), so ``H = sum_n sum_c (J_n^T l_nc) (J_n^T l_nc)^T`` over the ``K`` columns
``l_nc`` of ``L_n``: ``K`` backward passes per batch, no Jacobian. Two structures:

* ``diag``: the exact diagonal ``sum_n sum_c (J_n^T l_nc)^2`` of any parameters, from
  per-example vector-Jacobian products;
* ``kfac``: per dense or convolution layer (``flax.linen.Dense``/``Conv`` and the types
  built on them) with weights ``W [D_in (+1 bias), D_out]`` (a conv kernel
  ``[kh, kw, C_in, C_out]`` flattened row-major, as its patches are), the Kronecker
  factorization [1, 2] ``H_layer ~= A (x) G``,

      A = sum_n sum_t a_nt a_nt^T,    G = 1 / (N T) sum_n sum_t sum_c g_ntc g_ntc^T,

  with ``a_nt`` the layer's input at position ``t`` (a dense layer: ``T = 1``, or the
  token axes; a convolution: its ``T`` patches, KFC [2]) and the bias' constant 1, and
  ``g_ntc`` the vector-Jacobian product of ``l_nc`` with the layer's output at ``t``.
  For one example at one position it is the exact block of the GGN. The inputs and
  output gradients are taken by intercepting the layers' ``__call__``
  (``flax.linen.intercept_methods``): a zero added to each output is what the gradient
  is taken with respect to, so any Flax model works unchanged.

Both are sums over examples, accumulated batch by batch (``mask`` weighs out padding):
under ``jit`` with the batch sharded on ``data``, each batch's sums reduce over the
global batch, and the factors never depend on the number of devices.

References:
  [1] Martens, Grosse. Optimizing Neural Networks with Kronecker-factored Approximate
      Curvature. ICML 2015. https://arxiv.org/abs/1503.05671
  [2] Grosse, Martens. A Kronecker-factored Approximate Fisher Matrix for Convolution
      Layers. ICML 2016. https://arxiv.org/abs/1602.01407
  [3] Schraudolph. Fast Curvature Matrix-Vector Products for Second-Order Gradient
      Descent. Neural Computation 2002. https://doi.org/10.1162/08997660260028683
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from relbench.errors import UsageError

#: ``forward(params, inputs) -> logits [M, B, K]``: the network with other parameters.
Forward = Callable[[Any, jax.Array], jax.Array]


def flatten(params) -> dict[str, jax.Array]:
    """``{"Dense_0/kernel": array, ...}``: the parameter tree by ``/``-joined path."""
    return traverse_util.flatten_dict(params, sep="/")


def unflatten(flat: dict[str, Any]):
    return traverse_util.unflatten_dict(flat, sep="/")


def select(params, subset: str | Sequence[str]) -> list[str]:
    """The paths of the parameters in ``subset``: ``"all"``, or path prefixes (a
    sequence, or one string with commas), each naming a module or a parameter."""
    paths = list(flatten(params))
    if subset == "all":
        return paths
    prefixes = subset.split(",") if isinstance(subset, str) else list(subset)
    chosen = []
    for prefix in (p.strip().strip("/") for p in prefixes):
        found = [p for p in paths if p == prefix or p.startswith(prefix + "/")]
        if not found:
            raise UsageError(
                f"laplace subset '{prefix}' names no parameter; the network's are: "
                + ", ".join(sorted({p.rsplit("/", 1)[0] for p in paths}))
            )
        chosen += [p for p in found if p not in chosen]
    return chosen


def ggn_factor(probs: jax.Array) -> jax.Array:
    """``L = diag(sqrt p) - p sqrt(p)^T`` per row, ``L L^T = diag(p) - p p^T``:
    ``[B, K] -> [B, K, K]`` (columns ``c``: ``L[:, :, c]``)."""
    root = jnp.sqrt(probs)
    return jax.vmap(jnp.diag)(root) - probs[:, :, None] * root[:, None, :]


def log_likelihood(logits: jax.Array, distributions: jax.Array, weights: jax.Array):
    """``sum_n w_n sum_k t_nk log softmax(f_n)_k``."""
    return jnp.sum(weights * jnp.sum(distributions * jax.nn.log_softmax(logits, -1), -1))


# ---------------------------------------------------------------- diagonal GGN


def diag_ggn(
    forward: Forward, params, paths: Sequence[str], inputs: jax.Array, weights: jax.Array
) -> dict[str, jax.Array]:
    """``{path: sum_n w_n sum_c (J_n^T l_nc)^2}`` over a batch, shaped as each parameter."""
    flat = flatten(params)
    chosen = {p: flat[p] for p in paths}

    def one(x, weight):
        def logits_of(sub):
            return forward(unflatten({**flat, **sub}), x[None])[0, 0]  # [1, 1, K] -> [K]

        logits, pullback = jax.vjp(logits_of, chosen)
        factor = ggn_factor(jax.nn.softmax(logits)[None])[0]  # [K, K]

        def column(total, c):
            (g,) = pullback(factor[:, c])
            return jax.tree.map(lambda t, v: t + jnp.square(v), total, g), None

        zeros = jax.tree.map(jnp.zeros_like, chosen)
        total, _ = jax.lax.scan(column, zeros, jnp.arange(logits.shape[-1]))
        return jax.tree.map(lambda t: weight * t, total)

    per_example = jax.vmap(one)(inputs, weights)
    return jax.tree.map(lambda v: jnp.sum(v, 0), per_example)


# ---------------------------------------------------------------- KFAC


@dataclasses.dataclass(frozen=True)
class Layer:
    """What KFAC needs of a dense or convolution layer (its static settings)."""

    path: str
    use_bias: bool
    conv: dict | None = None  # the patch settings of a convolution


def _layer(module: nn.Module) -> Layer:
    path = "/".join(module.scope.path)
    if isinstance(module, nn.Dense):
        return Layer(path, module.use_bias)
    padding = module.padding
    if isinstance(padding, str) and padding not in ("SAME", "VALID"):
        raise UsageError(f"laplace kfac: padding '{padding}' of {path} is not supported")
    if module.feature_group_count != 1:
        raise UsageError(f"laplace kfac: grouped convolution {path} is not supported")
    kernel_size = tuple(module.kernel_size)
    n = len(kernel_size)

    def expand(value):
        return (1,) * n if value is None else (value,) * n if isinstance(value, int) else value

    if isinstance(padding, int):
        padding = [(padding, padding)] * n
    elif not isinstance(padding, str):
        padding = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    return Layer(
        path,
        module.use_bias,
        {
            "filter_shape": kernel_size,
            "window_strides": expand(module.strides),
            "padding": padding,
            "lhs_dilation": expand(module.input_dilation),
            "rhs_dilation": expand(module.kernel_dilation),
        },
    )


def layer_inputs(layer: Layer, x: jax.Array) -> jax.Array:
    """The layer's input rows ``a_nt`` (with the bias' 1): ``[B, T, D_in (+1)]``, ordered
    as the kernel flattened row-major."""
    x = x.astype(jnp.float32)
    if layer.conv is None:
        rows = x.reshape(x.shape[0], -1, x.shape[-1])
    else:
        n = len(layer.conv["filter_shape"])
        spec = "N" + "HWD"[:n] + "C"
        patches = jax.lax.conv_general_dilated_patches(
            x, **layer.conv, dimension_numbers=(spec, "OI" + "HWD"[:n], spec)
        )  # [B, *spatial, C * prod(kernel)], channel-major
        c = x.shape[-1]
        grid = patches.reshape(patches.shape[: n + 1] + (c, -1))  # [B, *spatial, C, k]
        # [B, *spatial, C, k] -> [B, T, k * C]: the kernel's (kh, kw, C_in) order.
        rows = jnp.swapaxes(grid, -1, -2).reshape(x.shape[0], -1, grid.shape[-1] * c)
    if layer.use_bias:
        rows = jnp.concatenate([rows, jnp.ones(rows.shape[:-1] + (1,), rows.dtype)], -1)
    return rows


def _intercepting(selected: Callable[[Layer], bool], record: dict, perturbations: dict | None):
    """An interceptor recording each selected layer's input, and adding its perturbation
    (zeros, the point the output gradient is taken at) to its output."""

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, (nn.Dense, nn.Conv)):
            return next_fun(*args, **kwargs)
        layer = _layer(module)
        if not selected(layer):
            return next_fun(*args, **kwargs)
        if layer.path in record:
            raise UsageError(f"laplace kfac: layer {layer.path} is called twice (shared)")
        output = next_fun(*args, **kwargs)
        record[layer.path] = (layer, args[0], jax.ShapeDtypeStruct(output.shape, output.dtype))
        return output if perturbations is None else output + perturbations[layer.path]

    return interceptor


def kfac_layers(forward: Forward, params, paths: Sequence[str], inputs: jax.Array) -> dict:
    """``{layer path: (Layer, output shape)}``: the dense and conv layers whose kernel is
    among ``paths``, from one abstract forward pass."""
    chosen = set(paths)
    record: dict = {}

    def run(params, inputs):
        with nn.intercept_methods(
            _intercepting(lambda layer: f"{layer.path}/kernel" in chosen, record, None)
        ):
            forward(params, inputs)

    jax.eval_shape(run, params, inputs)
    return {path: (layer, shape) for path, (layer, _, shape) in record.items()}


def kfac_sums(
    forward: Forward,
    params,
    layers: dict,
    inputs: jax.Array,
    distributions: jax.Array,
    weights: jax.Array,
) -> tuple[dict, jax.Array]:
    """One batch's ``{path: (sum w a a^T, sum w g g^T / T)}`` and its log-likelihood."""
    perturbations = {p: jnp.zeros(s.shape, s.dtype) for p, (_, s) in layers.items()}

    def logits_of(perturbations):
        record: dict = {}
        with nn.intercept_methods(
            _intercepting(lambda layer: layer.path in layers, record, perturbations)
        ):
            logits = forward(params, inputs)[0]  # [1, B, K] -> [B, K]
        return logits.astype(jnp.float32), {p: x for p, (_, x, _) in record.items()}

    logits, pullback, seen = jax.vjp(logits_of, perturbations, has_aux=True)
    root = jnp.sqrt(weights)[:, None, None]
    factor = ggn_factor(jax.nn.softmax(logits)) * root  # sqrt(w_n) L_n: g g^T weighs w_n

    def column(total, c):
        (g,) = pullback(factor[:, :, c])
        added = {}
        for path, out in g.items():  # [B, *positions, D_out] -> [B*T, D_out]
            rows = out.astype(jnp.float32).reshape(-1, out.shape[-1])
            positions = rows.shape[0] // out.shape[0]
            added[path] = total[path] + rows.T @ rows / positions
        return added, None

    zeros = {p: jnp.zeros((s.shape[-1],) * 2, jnp.float32) for p, (_, s) in layers.items()}
    g_sums, _ = jax.lax.scan(column, zeros, jnp.arange(logits.shape[-1]))
    sums = {}
    for path, (layer, _) in layers.items():
        rows = layer_inputs(layer, seen[path]) * root  # [B, T, D_in (+1)], weighed
        rows = rows.reshape(-1, rows.shape[-1])
        sums[path] = (rows.T @ rows, g_sums[path])
    return sums, log_likelihood(logits, distributions, weights)

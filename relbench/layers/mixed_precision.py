"""Mixed precision: parameters in float32, the forward and backward pass in a compute dtype.

Every layer takes the two fields of Flax layers: ``param_dtype``, the dtype its
parameters are stored, updated and checkpointed in (float32), and ``dtype``, the dtype
of its computation (``None``: the inputs' and parameters' promoted dtype, i.e. float32
for float32 parameters). With ``dtype = bfloat16`` a layer casts its inputs and its
parameters to bfloat16 before its matmuls and convolutions, so the activations and
their gradients are bfloat16 while the gradient reaching each parameter (through the
cast) and the optimizer state are float32 [1, 2].

What stays float32 whatever ``dtype`` says, because bfloat16's 8-bit mantissa
(relative precision ``2^-8``) would change the result, not only round it:

* the power iteration of spectral normalization and the bound ``W / max(1, sigma / c)``
  (``spectral_norm``): ``sigma`` estimated in bfloat16 would let the bound drift by
  about 0.4%; the bounded kernel is cast only for the layer's own product;
* the random-feature GP head's features, its Laplace precision ``P = s I + sum phi
  phi^T`` and its Cholesky factor (``gaussian_process``): a sum of thousands of
  rank-one terms and a factorization of an ill-conditioned matrix;
* heteroscedastic noise samples and their MC-averaged softmax (``heteroscedastic``);
* the head's outputs: ``relbench.models.Classifier`` casts the logits and every extra
  to float32, so softmax / log-softmax, every loss and every metric are float32.

Batch normalization keeps float32 statistics by itself (``flax.linen.BatchNorm``
reduces in float32). ``relbench.models.LayerTypes.dtype`` is the one place a model's
compute dtype is set: ``LayerTypes.bound`` gives it to every layer type that takes a
``dtype`` field (``bind_fields``), and heads pass it on to the layer types they are
built from (``with_dtype``). The loop sets it from ``config.train.compute_dtype``.

References:
  [1] Micikevicius et al. Mixed Precision Training. ICLR 2018.
      https://arxiv.org/abs/1710.03740
  [2] Kalamkar et al. A Study of BFLOAT16 for Deep Learning Training. 2019.
      https://arxiv.org/abs/1905.12322
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import jax
import jax.numpy as jnp

from relbench.errors import UsageError

ModuleDef = Any
Dtype = Any

#: The compute dtypes ``config.train.compute_dtype`` may name.
COMPUTE_DTYPES = ("float32", "bfloat16")

#: The dtype of the numerically delicate parts (see the module docstring).
DELICATE = jnp.float32


def bind_fields(layer_type: ModuleDef, **fields: Any) -> ModuleDef:
    """``layer_type`` with those of ``fields`` set that its constructor takes.

    Layers that behave differently in training and evaluation declare it as a
    constructor field (``train`` for spectral-normalized layers, which update their
    power iteration only in training; ``use_running_average`` for batch norm); plain
    ``nn.Dense`` and ``nn.Conv`` take neither and come back unchanged. Likewise
    ``dtype``, which only layers with a compute dtype take.
    """
    parameters = inspect.signature(layer_type).parameters
    taken = {name: value for name, value in fields.items() if name in parameters}
    return functools.partial(layer_type, **taken) if taken else layer_type


def with_dtype(layer_type: ModuleDef, dtype: Dtype | None) -> ModuleDef:
    """``layer_type`` computing in ``dtype`` if it takes one; unchanged for ``None``."""
    return layer_type if dtype is None else bind_fields(layer_type, dtype=dtype)


def as_float32(tree: Any) -> Any:
    """Every floating leaf of ``tree`` in float32 (other leaves unchanged)."""
    return jax.tree.map(
        lambda x: x.astype(DELICATE) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def compute_dtype(name: str) -> Dtype | None:
    """``config.train.compute_dtype`` -> a model's ``LayerTypes.dtype`` (``None`` for
    float32: the layers' default, the programs of a run without mixed precision)."""
    if name not in COMPUTE_DTYPES:
        raise UsageError(
            f"unknown config.train.compute_dtype '{name}'; choose {' or '.join(COMPUTE_DTYPES)}"
        )
    return None if name == "float32" else jnp.dtype(name)

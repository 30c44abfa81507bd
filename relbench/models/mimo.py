"""MIMO [1]: M independent subnetworks inside one network, M inputs in, M heads out.

The network's input is the concatenation, on the last (channel) axis, of M inputs
``x_1..x_M`` (``stack_member_inputs``); its head has ``M * K`` outputs, read as M
K-way heads (``MIMOHead``). Any model becomes a MIMO model by these two changes, with
``ensemble_size = 1`` (it is one network) and a first layer that sees ``M * C`` channels.

* Training: member ``m`` gets its own independently shuffled copy of the batch, so
  each head learns to predict from its own input and ignore the others; the members
  become independent subnetworks. ``mimo_indices`` draws the shuffles with
  *batch repetition* (the batch is repeated ``R`` times before shuffling, so every
  example reaches every head more often per step) and *input repetition* (a fraction
  ``rho`` of the rows is shared by all members, which trades member independence for
  a stronger shared network) [2].
* Test: every member gets the same input, ``x_m = x``; the M heads are the members of
  an ensemble in one forward pass.

References:
  [1] Havasi, Jenatton, Fort, Liu, Snoek, Lakshminarayanan, Dai, Tran. Training
      independent subnetworks for robust prediction. ICLR 2021.
      https://arxiv.org/abs/2010.06610
  [2] The input and batch repetition of [1], Section 3.4 and its Uncertainty
      Baselines code: https://github.com/google/uncertainty-baselines
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.layers.heads import DenseHead
from relbench.layers.members import tile_members
from relbench.layers.mixed_precision import with_dtype

ModuleDef = Any


def mimo_indices(
    key: jax.Array,
    batch_size: int,
    ensemble_size: int,
    batch_repetitions: int,
    input_repetition_probability: float,
) -> jax.Array:
    """Which batch row each member sees in each of the ``R * B`` training slots.

    The batch indices are repeated ``R`` times and shuffled once (the main shuffle);
    every member then reshuffles the first ``(1 - rho) R B`` slots independently and
    keeps the last ``rho R B`` as they are, so those slots carry the same example for
    all members.

    Returns:
      ``[M, R * B]`` int32 row indices into the batch.
    """
    main_key, *member_keys = jax.random.split(key, ensemble_size + 1)
    slots = batch_size * batch_repetitions
    main = jax.random.permutation(main_key, jnp.tile(jnp.arange(batch_size), batch_repetitions))
    shuffled = int(slots * (1.0 - input_repetition_probability))
    return jnp.stack(
        [
            jnp.concatenate([jax.random.permutation(k, main[:shuffled]), main[shuffled:]])
            for k in member_keys
        ]
    ).astype(jnp.int32)


def stack_member_inputs(inputs: jax.Array) -> jax.Array:
    """M inputs -> one network input: ``[M, N, ..., C]`` -> ``[N, ..., M * C]``."""
    x = jnp.moveaxis(inputs, 0, -2)  # [M, N, ..., C] -> [N, ..., M, C]
    return x.reshape(x.shape[:-2] + (-1,))  # [N, ..., M, C] -> [N, ..., M*C]


def repeated_inputs(inputs: jax.Array, ensemble_size: int) -> jax.Array:
    """The test-time input: every member sees ``x``. ``[N, ..., C]`` -> ``[N, ..., M * C]``."""
    return stack_member_inputs(jnp.broadcast_to(inputs, (ensemble_size, *inputs.shape)))


class MIMOHead(nn.Module):
    """M heads read from one layer: features ``[N, D]`` -> outputs ``[M * N, K]``,
    member-major (head ``m``'s outputs are rows ``[m N, (m + 1) N)``).

    ``head`` (any head, e.g. a dense head, or a Gaussian one for regression) is built with
    ``M * K`` outputs; each of its outputs, the logits and every extra, ``[N, M * K]``, is
    read as M heads of K. Every member sees the same features, tiled member-major as
    ``extras["features"]``.

    Attributes:
      num_classes: K.
      ensemble_size: M.
      head: the head type of the M * K outputs.
      dtype: the compute dtype of ``head`` (``None``: its own).
    """

    num_classes: int
    ensemble_size: int = 3
    head: ModuleDef = DenseHead
    dtype: Any = None

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        n, m, k = features.shape[0], self.ensemble_size, self.num_classes

        def member_major(outputs: jax.Array) -> jax.Array:
            outputs = jnp.swapaxes(outputs.reshape(n, m, k), 0, 1)  # [N, M*K] -> [M, N, K]
            return outputs.reshape(m * n, k)  # [M, N, K] -> [M*N, K]

        logits, extras = with_dtype(self.head, self.dtype)(m * k)(features, train=train)
        extras = {name: member_major(value) for name, value in extras.items()}
        return member_major(logits), {"features": tile_members(features, m), **extras}

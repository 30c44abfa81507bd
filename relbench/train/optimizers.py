"""Optimizers and learning-rate schedules from ``config.optimizer``.

``make(total_steps=..., **config.optimizer)`` returns an optax ``GradientTransformation``.
Weight decay applies to the parameters the method's ``decay_mask`` marks: by default
weight matrices only (``ndim > 1``), the usual choice that leaves biases and
normalization scales alone; methods whose per-unit parameters carry a member axis
(ensembles) give their own mask. Decay is coupled (L2 added to the gradient) for
``sgd`` and ``adam``, decoupled for ``adamw``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import optax

from relbench.errors import UsageError


def schedule(
    learning_rate: float,
    total_steps: int,
    kind: str,
    warmup_steps: int,
    decay_epochs_fraction: Sequence[float],
    decay_factor: float,
) -> optax.Schedule:
    """Linear warmup from 0, then constant, cosine to 0, or step decay at fractions of training."""
    decay_steps = max(total_steps - warmup_steps, 1)
    if kind == "constant":
        main = optax.constant_schedule(learning_rate)
    elif kind == "cosine":
        main = optax.cosine_decay_schedule(learning_rate, decay_steps)
    elif kind == "step":
        boundaries = {
            int(f * total_steps) - warmup_steps: decay_factor for f in decay_epochs_fraction
        }
        main = optax.piecewise_constant_schedule(learning_rate, boundaries)
    else:
        raise UsageError(
            f"unknown config.optimizer.schedule '{kind}'; choose constant, cosine or step"
        )
    if warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, main], [warmup_steps])


def matrices(params: Any) -> Any:
    """The usual decay mask: weight matrices and kernels (rank > 1), not biases and scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make(
    *,
    total_steps: int,
    decay_mask: Callable[[Any], Any] | None = None,
    name: str = "sgd",
    learning_rate: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    schedule_kind: str = "cosine",
    warmup_steps: int = 0,
    decay_epochs_fraction: Sequence[float] = (0.3, 0.6, 0.8),
    decay_factor: float = 0.2,
    grad_clip_norm: float = 0.0,
) -> optax.GradientTransformation:
    """The optimizer named ``name`` (sgd, adam or adamw) with a scheduled learning rate;
    weight decay applies to the leaves ``decay_mask(params)`` marks (the method's; None:
    ``matrices``)."""
    decay_mask = matrices if decay_mask is None else decay_mask
    lr = schedule(
        learning_rate, total_steps, schedule_kind, warmup_steps, decay_epochs_fraction, decay_factor
    )
    if name == "sgd":
        core = [optax.sgd(lr, momentum=momentum or None, nesterov=nesterov and momentum > 0)]
    elif name == "adam":
        core = [optax.adam(lr)]
    elif name == "adamw":
        core = [optax.adamw(lr, weight_decay=weight_decay, mask=decay_mask)]
    else:
        raise UsageError(f"unknown config.optimizer.name '{name}'; choose sgd, adam or adamw")
    chain = []
    if grad_clip_norm > 0:
        chain.append(optax.clip_by_global_norm(grad_clip_norm))
    if weight_decay > 0 and name != "adamw":
        chain.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
    return optax.chain(*chain, *core)

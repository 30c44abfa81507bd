"""The post-hoc step record: fit on a model's outputs, then transform every output.

A post-hoc step improves a trained model without touching its training: it fits a few
parameters on the model's outputs on a held-out split and from then on transforms
those outputs. ``relbench.posthoc.<name>.make(**hparams)`` returns a ``PosthocStep``:

* ``fit(outputs, targets) -> params``: ``outputs`` are the member logits ``[M, N, K]``
  and extras (``extras["features"]``, the penultimate features ``[M, N, D]``, among
  them) of every example of ``split``, ``targets`` that split's ``"label"`` (and
  ``"soft_label"``, where the set has them); ``params`` is a pytree of arrays;
* ``apply(outputs, params) -> outputs``: the same structure out as in, on any batch;
* ``split``: the evaluation set it fits on (``"validation"`` by default);
* ``tasks``: the dataset tasks it is defined for;
* ``input_extras`` (optional, for a step that needs the model itself, as ODIN needs
  its input gradients): ``(forward, inputs) -> {name: [M, B, ...]}``, where
  ``forward(inputs) -> outputs`` is the method's prediction with the state and key of
  the batch fixed (differentiable in ``inputs``); the loop calls it inside every
  prediction, of the fit splits and the evaluation sets alike, and joins what it
  returns to the outputs' extras, which ``fit`` and ``apply`` then read.

Both functions are pure and jitted by the loop; ``config.posthoc`` lists the steps,
which fit and apply in order after any method, each on its predecessors' outputs.

A step that reads the network's parameters (full-network Laplace) sets ``network``, a
``NetworkFit``: the loop then gives it ``params`` (the trained parameter tree) and
``forward(params, inputs) -> logits [M, B, K]`` (the method's prediction with other
parameters), streams the split through ``accumulate`` one global, sharded batch at a
time (``input``, the targets and ``mask``), and calls its ``apply`` with each batch's
inputs. Such a step comes first in ``config.posthoc`` (it reruns the network, so it
cannot see a predecessor's outputs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax

Outputs = tuple[jax.Array, dict[str, jax.Array]]
Targets = Mapping[str, jax.Array]


class FitFn(Protocol):
    def __call__(self, outputs: Outputs, targets: Targets) -> Any: ...


class ApplyFn(Protocol):
    def __call__(self, outputs: Outputs, params: Any) -> Outputs: ...


class InputExtrasFn(Protocol):
    def __call__(
        self, forward: Callable[[jax.Array], Outputs], inputs: jax.Array
    ) -> dict[str, jax.Array]: ...


@dataclasses.dataclass(frozen=True)
class NetworkFit:
    """The functions of a step over the network's parameters (all pure, each jitted):

    * ``init(params, forward, batch) -> statistics``: zeros, shaped from one batch;
    * ``accumulate(statistics, params, forward, batch) -> statistics``;
    * ``finish(statistics, params) -> fitted``;
    * ``apply(outputs, fitted, params, forward, inputs) -> outputs``.
    """

    init: Callable[..., Any]
    accumulate: Callable[..., Any]
    finish: Callable[..., Any]
    apply: Callable[..., Outputs]


@dataclasses.dataclass(frozen=True)
class PosthocStep:
    fit: FitFn
    apply: ApplyFn
    split: str = "validation"
    tasks: tuple[str, ...] = ("classification",)
    input_extras: InputExtrasFn | None = None
    network: NetworkFit | None = None


def predict_with_inputs(
    steps: Sequence[PosthocStep], forward: Callable[[jax.Array], Outputs], inputs: jax.Array
) -> Outputs:
    """``forward(inputs)``, its extras joined by each step's ``input_extras``."""
    logits, extras = forward(inputs)
    for step in steps:
        if step.input_extras is not None:
            extras = {**extras, **step.input_extras(forward, inputs)}
    return logits, extras


def apply_all(
    steps: Sequence[PosthocStep], outputs: Outputs, fitted: Sequence[Any], network=None
) -> Outputs:
    """``outputs`` through every step, in order, each with its fitted parameters;
    ``network``: ``(params, forward, inputs)`` of the batch, for a ``NetworkFit`` step."""
    for step, params in zip(steps, fitted, strict=True):
        if step.network is None:
            outputs = step.apply(outputs, params)
        else:
            outputs = step.network.apply(outputs, params, *network)
    return outputs

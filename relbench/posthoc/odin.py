"""ODIN [1]: an OOD score from temperature scaling and a perturbation of the input.

With the predictive distribution at temperature ``T``, ``p_T(x) = 1/M sum_m
softmax(f_m(x) / T)`` (members ``f_m``; ``T = 1`` is the model's own), ODIN moves each
input a step ``epsilon`` against the gradient of its negative log maximum probability,

    x' = x - epsilon sign(-grad_x log max_k p_T(x)_k),

which raises the top probability of in-distribution inputs more than that of OOD
inputs, and scores ``S(x) = max_k p_T(x')_k`` (``score/odin = -S``: larger = more likely
OOD, the orientation of ``relbench.metrics.scores``). A large ``T`` makes ``S`` rank by
the gap between the top logit and the others rather than by the softmax's saturated
top value. The paper's defaults [1] are ``T = 1000`` and ``epsilon = 0.0014`` (its
CIFAR-10 choice, inputs normalized by the channel standard deviations).

**Choosing epsilon without OOD data.** ODIN tuned ``epsilon`` on OOD examples; with
several ``epsilons`` this step picks, as generalized ODIN does [2], the one with the
largest mean score ``S`` on the in-distribution fit split (validation by default),
never looking at an OOD set. The default is the single, fixed ``epsilon = 0.0014``:
every candidate costs a forward pass on every evaluated batch (below).

**Cost.** The step needs the model, not its outputs: it computes its scores inside
every prediction (``PosthocStep.input_extras``: one backward pass through the method's
prediction for ``grad_x``, then one forward pass per nonzero candidate ``epsilon``), so
every evaluated batch costs the prediction, a backward pass and one forward pass per
candidate: ``benchmarks/posthoc.py`` measured 3.0-3.6 forward passes of a ResNet-20 (on
CPU, one epsilon), against the 2 the other steps stay under. The inputs must be
floating point (not token ids); a step before ODIN in ``config.posthoc`` does not
change its scores (they are the model's).

References:
  [1] Liang, Li, Srikant. Enhancing The Reliability of Out-of-distribution Image
      Detection in Neural Networks. ICLR 2018. https://arxiv.org/abs/1706.02690
  [2] Hsu, Shen, Jin, Kira. Generalized ODIN: Detecting Out-of-distribution Image
      without Learning from Out-of-distribution Data. CVPR 2020.
      https://arxiv.org/abs/2002.11297
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.metrics.predictive import predictive_log_probs
from relbench.metrics.scores import SCORE_PREFIX
from relbench.posthoc.step import Outputs, PosthocStep, Targets

#: ``[1, B, G]``: ``S(x)`` at each candidate epsilon, the extras ``fit`` chooses from.
PERTURBED_MAX_PROB = "odin/max_prob"


def perturbed_max_probs(
    forward: Callable[[jax.Array], Outputs],
    inputs: jax.Array,
    temperature: float,
    epsilons: Sequence[float],
) -> jax.Array:
    """``[B, G]``: ``max_k p_T(x')_k`` of every input at each of the ``G`` epsilons."""
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise UsageError(
            f"odin perturbs the model's inputs, and these are {inputs.dtype} (token ids or "
            "stored predictions) with no gradient; remove odin from config.posthoc"
        )

    def max_log_prob(x: jax.Array) -> jax.Array:
        logits, _ = forward(x)
        return jnp.max(predictive_log_probs(logits.astype(jnp.float32) / temperature), -1)

    def total(x: jax.Array):
        per_example = max_log_prob(x)  # [B]; examples are independent, so the
        return jnp.sum(per_example), per_example  # gradient of the sum is each one's

    (_, unperturbed), grad = jax.value_and_grad(total, has_aux=True)(inputs)
    direction = jnp.sign(grad).astype(inputs.dtype)  # x' = x + eps sign(grad log S)
    columns = [
        unperturbed if eps == 0.0 else max_log_prob(inputs + eps * direction) for eps in epsilons
    ]
    return jnp.exp(jnp.stack(columns, axis=-1))


def make(
    split: str = "validation",
    temperature: float = 1000.0,
    epsilons: tuple[float, ...] = (0.0014,),
) -> PosthocStep:
    """Args:
    split: the in-distribution set that picks epsilon among ``epsilons``.
    temperature: ``T`` > 0 of the softmax (1000 in [1]).
    epsilons: the candidate perturbation sizes (>= 0, in the inputs' units); one
      value is used as it is.
    """
    if temperature <= 0:
        raise UsageError(f"odin needs temperature > 0, got {temperature}")
    if not epsilons or min(epsilons) < 0:
        raise UsageError(f"odin needs one or more epsilons >= 0, got {epsilons}")
    epsilons = tuple(float(e) for e in epsilons)

    def input_extras(forward, inputs):
        scores = perturbed_max_probs(forward, inputs, temperature, epsilons)  # [B, G]
        return {PERTURBED_MAX_PROB: scores[None]}

    def fit(outputs: Outputs, targets: Targets):
        del targets  # the in-distribution score alone picks epsilon [2]
        mean_score = jnp.mean(outputs[1][PERTURBED_MAX_PROB][0], axis=0)  # [G]
        index = jnp.argmax(mean_score)
        return {"index": index, "epsilon": jnp.asarray(epsilons)[index]}

    def apply(outputs: Outputs, params) -> Outputs:
        logits, extras = outputs
        score = jnp.take(extras[PERTURBED_MAX_PROB], params["index"], axis=-1)  # [1, B]
        return logits, {**extras, f"{SCORE_PREFIX}odin": -score}

    return PosthocStep(fit=fit, apply=apply, split=split, input_extras=input_extras)

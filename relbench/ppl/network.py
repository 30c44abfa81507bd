"""A relbench network as a probabilistic program over its weights.

For a model ``f(x; W)`` (any relbench model: ``apply_fn(variables, x, train=False) ->
(logits [M, B, K], extras)``), a weight prior ``p(w)`` applied to every parameter and
the dataset's likelihood ``p(y | f(x; W))`` (``relbench.methods.likelihoods``: classes,
labels, a Gaussian), :func:`network_program` is the program

    W_l ~ p           for every parameter leaf l, named by its path ("Dense_0/kernel"),
    y   ~ p(y | f(x; W))                                      named "y",

so ``with ppl.tape() as rvs: program(batch)`` records every weight by name, and
``ppl.make_log_joint_fn(program)`` is the pure log density

    log p(W, y | x) = sum_l sum_i log p(W_l,i) + sum_b log p(y_b | f(x_b; W)),

which :func:`log_density` exposes as a function of the parameter pytree: what full-
batch HMC/NUTS (``relbench.ppl.sampling``), Laplace and SG-MCMC need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.ppl.log_joint import make_log_joint_fn
from relbench.ppl.priors import WeightPrior
from relbench.ppl.random_variable import RandomVariable, make_random_variable

OBSERVATION = "y"


def parameter_names(params: Any) -> list[str]:
    """The ``/``-joined path of every leaf, in ``jax.tree.leaves`` order."""
    return [
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]


def named(params: Any) -> dict[str, jax.Array]:
    """The parameter pytree as ``{path: leaf}``."""
    return dict(zip(parameter_names(params), jax.tree.leaves(params), strict=True))


class LikelihoodDistribution:
    """The likelihood of the labels given a network's outputs, as a distribution: its
    ``log_prob(labels)`` is ``likelihood.log_prob(logits, extras, {"label": labels})``
    (``[M, B]``). It only scores observed labels (the observation must be given)."""

    def __init__(self, likelihood: Any, logits: jax.Array, extras: Mapping[str, Any], shape):
        self.likelihood, self.logits, self.extras = likelihood, logits, dict(extras)
        self.batch_shape, self.event_shape = tuple(shape), ()

    def log_prob(self, labels: jax.Array) -> jax.Array:
        return self.likelihood.log_prob(self.logits, self.extras, {"label": labels})

    def sample(self, seed, sample_shape=()):
        del seed, sample_shape
        raise UsageError("a network program's labels 'y' must be observed; pass them as values")


Observation = make_random_variable(LikelihoodDistribution)


def network_program(
    apply_fn: Callable[..., Any], template: Any, prior: WeightPrior, likelihood: Any
) -> Callable[[Mapping[str, jax.Array]], RandomVariable]:
    """``program(batch)``: every parameter of ``template``'s structure is a random
    variable with prior ``prior`` named by its path; the labels ``batch["label"]`` are
    the observation ``"y"``. ``apply_fn(params, x) -> (logits, extras)``."""
    names = parameter_names(template)
    treedef = jax.tree.structure(template)
    shapes = [jnp.shape(leaf) for leaf in jax.tree.leaves(template)]
    family = getattr(prior.family, "distribution", prior.family)
    constructor = make_random_variable(family)

    def program(batch: Mapping[str, jax.Array]) -> RandomVariable:
        weights = [
            constructor(**dict(prior.params), name=name, sample_shape=shape)
            for name, shape in zip(names, shapes, strict=True)
        ]
        params = jax.tree.unflatten(treedef, [w.value for w in weights])
        logits, extras = apply_fn(params, batch["input"])
        label = batch["label"]
        return Observation(likelihood, logits, extras, label.shape, name=OBSERVATION, value=label)

    return program


def log_density(
    apply_fn: Callable[..., Any], template: Any, prior: WeightPrior, likelihood: Any
) -> Callable[[Any, Mapping[str, jax.Array]], jax.Array]:
    """``log_density(params, batch) = log p(W = params, y | x)``, pure (jit, grad, vmap)."""
    log_joint = make_log_joint_fn(network_program(apply_fn, template, prior, likelihood))

    def density(params: Any, batch: Mapping[str, jax.Array]) -> jax.Array:
        return log_joint({**named(params), OBSERVATION: batch["label"]}, batch)

    return density

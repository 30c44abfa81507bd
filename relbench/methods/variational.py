"""Mean-field variational inference over the weights ("Bayes by Backprop" [1]).

The method replaces the model's dense (and, if asked, conv) layers and its head by the
mean-field Gaussian layers of ``relbench.layers.variational`` and minimizes the
negative evidence lower bound per training example,

    loss = -1/B sum_b log p(y_b | x_b, W) + beta_t * KL(q(W) || p(W)) / N,

with ``p(y | x, W)`` the dataset's likelihood (classes, labels or a Gaussian), ``W ~ q``
(one draw, reparameterization or Flipout [2]), N the number of
training examples, and ``beta_t = min(1, (t + 1) / kl_annealing_steps)`` a linear KL
warm-up (``beta = 1`` without annealing). At test time M independent posterior
samples are M members on the member axis: ``[M, B, K]`` logits.

References:
  [1] Blundell, Cornebise, Kavukcuoglu, Wierstra. Weight Uncertainty in Neural
      Networks. ICML 2015. https://arxiv.org/abs/1505.05424
  [2] Wen, Vicol, Ba, Tran, Grosse. Flipout: Efficient Pseudo-Independent Weight
      Perturbations on Mini-Batches. ICLR 2018. https://arxiv.org/abs/1803.04386
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from relbench import ppl
from relbench.errors import UsageError
from relbench.layers import variational as vl
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.method import LossFn, Method, dense_head, sampled_predict
from relbench.ppl import divergences

LAYERS = ("dense", "conv", "head", "cell")
#: Prior name -> (ppl family, its parameters from the method's hyperparameters).
PRIORS: dict[str, Callable[..., vl.WeightPrior]] = {
    "normal": lambda scale, weight, scale2, df: vl.NormalPrior(0.0, scale),
    "scale_mixture": lambda scale, weight, scale2, df: vl.ScaleMixturePrior(weight, scale, scale2),
    "laplace": lambda scale, weight, scale2, df: vl.WeightPrior(
        ppl.Laplace, (("loc", 0.0), ("scale", scale))
    ),
    "student_t": lambda scale, weight, scale2, df: vl.WeightPrior(
        ppl.StudentT, (("df", df), ("loc", 0.0), ("scale", scale))
    ),
    "horseshoe": lambda scale, weight, scale2, df: vl.WeightPrior(
        ppl.Horseshoe, (("scale", scale),)
    ),
}


def make_prior(
    prior: str,
    prior_scale: float,
    mixture_weight: float,
    mixture_scale2: float,
    prior_df: float = 3.0,
) -> vl.WeightPrior:
    """``"normal"``: N(0, prior_scale^2); ``"scale_mixture"``: ``mixture_weight``
    N(0, prior_scale^2) + (1 - mixture_weight) N(0, mixture_scale2^2); ``"laplace"``,
    ``"student_t"`` (``prior_df`` degrees of freedom), ``"horseshoe"``: centred at 0
    with scale ``prior_scale``. The Normal's KL is analytic, the others' Monte Carlo."""
    if prior not in PRIORS:
        raise UsageError(f"unknown variational prior '{prior}'; choose one of: {', '.join(PRIORS)}")
    return PRIORS[prior](prior_scale, mixture_weight, mixture_scale2, prior_df)


def kl_weight(step: jax.Array, kl_annealing_steps: int) -> jax.Array:
    """``min(1, (step + 1) / kl_annealing_steps)``; 1 when not annealing."""
    if kl_annealing_steps <= 0:
        return jnp.ones(())
    return jnp.minimum(1.0, (step + 1) / kl_annealing_steps)


total_kl = divergences.kl_sum  # the sum of every KL the layers sowed into a collection


def elbo_loss(
    likelihood: Likelihood,
    mutable: Sequence[str],
    kl_collection: str,
    kl_scale: Callable[[jax.Array], jax.Array],
) -> LossFn:
    """The negative ELBO per training example,

        -1/(M B) sum_{m,b} log p(y_b | x_b, W_m) + kl_scale(step) * KL / N,

    with the KL the layers sowed into ``kl_collection`` (summed) and N the number of
    training examples.
    """

    def loss_fn(apply_fn, variables, batch, rngs, *, step, num_train_examples):
        (logits, extras), updates = apply_fn(
            variables,
            batch["input"],
            train=True,
            rngs=rngs,
            mutable=[*mutable, kl_collection],
        )
        updates = dict(updates)
        kl = total_kl(updates.pop(kl_collection, {}))
        nll = -likelihood.log_prob(logits, extras, batch).mean()
        weight = kl_scale(step)
        loss = nll + weight * kl / num_train_examples
        metrics = {**likelihood.metrics(logits, extras, batch), "nll": nll, "kl": kl}
        return loss, (updates, {**metrics, "kl_weight": weight})

    return loss_fn


def make(
    likelihood: Likelihood = CATEGORICAL,
    estimator: str = "flipout",
    prior: str = "normal",
    prior_scale: float = 1.0,
    mixture_weight: float = 0.5,
    mixture_scale2: float = math.exp(-6.0),
    prior_df: float = 3.0,
    stddev_init: float = 1e-3,
    layers: Sequence[str] = ("dense", "head"),
    num_samples: int = 8,
    kl_annealing_steps: int = 0,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    estimator: ``"flipout"`` or ``"reparameterization"``.
    prior: ``"normal"``, ``"scale_mixture"``, ``"laplace"``, ``"student_t"`` or
      ``"horseshoe"`` (see ``make_prior``).
    prior_scale, mixture_weight, mixture_scale2, prior_df: the prior's parameters.
    stddev_init: initial posterior stddev of every weight.
    layers: which of the model's layer fields become variational: ``"dense"``,
      ``"conv"`` (models with convolutions), ``"head"``, ``"cell"`` (recurrent models:
      the Bayesian LSTM cell, which reparameterizes once per sequence whatever the
      estimator).
    num_samples: M, posterior samples at test time.
    kl_annealing_steps: linear KL warm-up length in steps (0: none).
    """
    if estimator not in vl.ESTIMATORS:
        raise UsageError(
            f"unknown variational estimator '{estimator}'; choose one of: "
            f"{', '.join(vl.ESTIMATORS)}"
        )
    unknown = sorted(set(layers) - set(LAYERS))
    if unknown or not layers:
        raise UsageError(
            f"variational layers must be a non-empty subset of {', '.join(LAYERS)}; "
            f"got {', '.join(unknown) or 'none'}"
        )
    if num_samples < 1:
        raise UsageError(f"variational num_samples must be >= 1, got {num_samples}")
    spec = vl.VariationalSpec(
        estimator=estimator,
        prior=make_prior(prior, prior_scale, mixture_weight, mixture_scale2, prior_df),
        stddev_init=stddev_init,
    )
    dense = functools.partial(vl.VariationalDense, variational=spec)
    variational = {
        "dense": dense,
        "conv": functools.partial(vl.VariationalConv, variational=spec),
        "cell": functools.partial(vl.LSTMCellReparameterization, variational=spec),
    }

    def layer_types(base):
        chosen = {name: variational[name] for name in layers if name != "head"}
        head = dense_head(likelihood, dense if "head" in layers else base.dense)
        return dataclasses.replace(base, **chosen, head=head)

    streams = ("dropout", vl.RNG_STREAM)
    return Method(
        layers=layer_types,
        loss_fn=elbo_loss(
            likelihood,
            ("batch_stats",),
            vl.KL_COLLECTION,
            functools.partial(kl_weight, kl_annealing_steps=kl_annealing_steps),
        ),
        predict_fn=sampled_predict(num_samples, streams),
        rng_streams=streams,
    )

"""The heteroscedastic classification head: input-dependent Gaussian noise on the logits.

Collier et al. [1, 2] put a Gaussian on the latent logits ``u`` of every example,

    u ~ N(mu(x), Sigma(x)),   Sigma(x) = V(x) V(x)^T + diag(d(x)^2),

with ``mu(x)`` the usual logits, ``V(x)`` a ``[K, R]`` low-rank factor (R =
``num_factors``; 0 keeps only the diagonal) and ``d(x) = softplus(.) + min_scale`` a
positive diagonal scale. The class probabilities are the expectation of the link over
that noise, estimated with S Monte Carlo samples at temperature ``tau``:

    softmax link:  p(y | x) = E_u[softmax(u / tau)]_y  ~=  1/S sum_s softmax(u_s / tau)_y
    sigmoid link:  p_k(x)   = E_u[sigmoid(u_k / tau)]  ~=  1/S sum_s sigmoid(u_sk / tau)

Samples are averaged in *probability* space, as in the paper. A sample is drawn as
``u_s = mu + V eps_R + d * eps_K`` with ``eps_R ~ N(0, I_R)``, ``eps_K ~ N(0, I_K)``.
The *parameter-efficient* variant [2] replaces ``V(x)`` by ``v(x) 1_R^T * V`` — a
learned, input-independent ``[K, R]`` matrix ``V`` whose rows are scaled by a per-class
gain ``v(x)`` — which adds ``K * R`` parameters instead of ``D * K * R``.

**What the head returns (the ``[M, B, K]`` contract).** The head does not return the
samples; it returns one logit vector per example whose link gives the MC-averaged
probabilities:

* softmax link: ``log p`` (``log`` of the mean of the sampled softmaxes). It is
  already normalized, so ``log_softmax(log p) = log p``: the shared
  ``relbench.metrics.predictive`` averages members' ``p`` correctly, and softmax
  cross-entropy on these logits is exactly the paper's loss ``-log 1/S sum_s p_s(y)``.
* sigmoid link: ``logit(p) = log p - log(1 - p)`` (per class), so that sigmoid
  cross-entropy on these logits is the paper's multi-label loss. Metrics built on the
  shared predictive (a softmax over classes) see ``softmax(logit p)``; a multi-label
  metric should apply ``sigmoid`` to the member logits instead.

Both are computed with ``logsumexp`` over the samples, so they stay finite and exact for
confident predictions. Returning per-sample logits instead would change the number of
rows of the head's output and break the member-major ``[M * B, K]`` layout.

**Composition.** The mean logits come from ``loc``, any head (features ``[N, D]`` ->
``(logits, extras)``): ``DenseHead`` by default, a BatchEnsemble head for
heteroscedastic BatchEnsemble, a random-feature GP head for HetSNGP [3]. For HetSNGP
the GP's posterior variance of the logits (named by ``loc_variance``, taken from the
loc head's extras) is added to the diagonal noise variance at test time, as in the
reference implementation of [3]; the loc head's extras are passed through. Its submodule
is named ``mean`` (as in ``GaussianHead``), not ``loc``: a submodule named like a field
holding a type would be taken for a method by flax's ``nnx.bridge.ToNNX``.

References:
  [1] Collier, Mustafa, Kokiopoulou, Jenatton, Berent. Correlated Input-Dependent
      Label Noise in Large-Scale Image Classification. CVPR 2021.
      https://arxiv.org/abs/2105.10305
  [2] Collier, Mustafa, Kokiopoulou, Jenatton, Berent. A Simple Probabilistic Method
      for Deep Classification under Input-Dependent Label Noise. 2020.
      https://arxiv.org/abs/2003.06778
  [3] Fortuin, Collier, Wenzel, Allingham, Liu, Tran, Lakshminarayanan, Berent,
      Jenatton, Kokiopoulou. Deep Classifiers with Label Noise Modeling and Distance
      Awareness. TMLR 2022. https://arxiv.org/abs/2110.02609
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.layers.heads import DenseHead
from relbench.layers.mixed_precision import DELICATE, as_float32, with_dtype

ModuleDef = Any

LINKS = ("softmax", "sigmoid")


def logit_noise(
    key: jax.Array,
    diag_scale: jax.Array,
    factor_loadings: jax.Array | None,
    num_samples: int,
) -> jax.Array:
    """Samples of the logit noise ``V eps_R + d * eps_K``.

    Args:
      key: a typed PRNG key.
      diag_scale: ``[N, K]`` diagonal scale ``d(x)`` (a standard deviation, >= 0).
      factor_loadings: ``[N, K, R]`` low-rank factor ``V(x)``, or None (diagonal only).
      num_samples: S.

    Returns:
      ``[S, N, K]`` noise samples with covariance ``V V^T + diag(d^2)`` per example.
    """
    diag_key, factor_key = jax.random.split(key)
    noise = diag_scale * standard_normal(diag_key, (num_samples, *diag_scale.shape))
    if factor_loadings is not None:
        n, _, r = factor_loadings.shape
        eps = standard_normal(factor_key, (num_samples, n, r))
        noise = noise + jnp.einsum("nkr,snr->snk", factor_loadings, eps.astype(noise.dtype))
    return noise


def standard_normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """N(0, 1) draws of ``shape``, drawn flat and reshaped.

    Drawing flat keeps XLA's compile time of the
    threefry kernel small (a 3-D draw compiles about ten times slower on CPU).
    """
    return jax.random.normal(key, (math.prod(shape),)).reshape(shape)  # [S*N*K] -> [S, N, K]


def logit_variance(diag_scale: jax.Array, factor_loadings: jax.Array | None) -> jax.Array:
    """``[N, K]`` marginal variance of each logit's noise: ``d_k^2 + sum_r V_kr^2``."""
    variance = jnp.square(diag_scale)
    if factor_loadings is not None:
        variance = variance + jnp.sum(jnp.square(factor_loadings), axis=-1)
    return variance


def mc_link_logits(
    mean_logits: jax.Array, noise: jax.Array, temperature: float, link: str
) -> jax.Array:
    """The logits of the MC-averaged link probabilities (see the module docstring).

    Args:
      mean_logits: ``[N, K]`` ``mu(x)``.
      noise: ``[S, N, K]`` logit noise samples.
      temperature: ``tau > 0``; the sampled logits are divided by it.
      link: ``"softmax"`` (returns ``log mean_s softmax``) or ``"sigmoid"`` (returns
        ``logit(mean_s sigmoid)`` per class).

    Returns:
      ``[N, K]`` logits.
    """
    samples = (mean_logits[None] + noise) / temperature  # [S, N, K]
    log_s = jnp.log(samples.shape[0])
    if link == "softmax":
        return jax.nn.logsumexp(jax.nn.log_softmax(samples, axis=-1), axis=0) - log_s
    if link == "sigmoid":
        # log p - log(1 - p); the log S terms cancel.
        log_p = jax.nn.logsumexp(jax.nn.log_sigmoid(samples), axis=0)
        log_not_p = jax.nn.logsumexp(jax.nn.log_sigmoid(-samples), axis=0)
        return log_p - log_not_p
    raise UsageError(f"unknown heteroscedastic link '{link}'; choose one of: {', '.join(LINKS)}")


class HeteroscedasticHead(nn.Module):
    """Heteroscedastic classification head [1]: features ``[N, D]`` -> logits ``[N, K]``.

    Attributes:
      num_classes: K.
      link: ``"softmax"`` (multi-class) or ``"sigmoid"`` (independent classes).
      num_factors: R, the rank of the low-rank part of the covariance; 0 = diagonal.
      parameter_efficient: share one ``[K, R]`` factor matrix across inputs, scaled per
        class by an input-dependent gain (see the module docstring).
      temperature: ``tau``; fixed here, tuned on validation by sweeping it.
      train_mc_samples: S in training.
      test_mc_samples: S in evaluation.
      min_scale: added to the softplus of the diagonal scale (keeps it positive).
      rng_stream: the Flax RNG stream the noise is drawn from.
      loc: the head computing the mean logits ``mu(x)`` (``DenseHead`` contract).
      dense: the dense layer type of the noise-scale layers.
      loc_variance: a key of ``loc``'s extras holding a ``[N]`` or ``[N, K]`` variance
        of the mean logits (a GP head's posterior variance, for HetSNGP [3]) that is
        added to the diagonal noise variance in evaluation; None ignores it.
      dtype: the compute dtype of ``loc`` and the ``dense`` layers (``None``: their
        own); the noise and its MC-averaged link are float32 whatever it says.
    """

    num_classes: int
    link: str = "softmax"
    num_factors: int = 10
    parameter_efficient: bool = False
    temperature: float = 1.0
    train_mc_samples: int = 100
    test_mc_samples: int = 1000
    min_scale: float = 1e-3
    rng_stream: str = "heteroscedastic"
    loc: ModuleDef = DenseHead
    dense: ModuleDef = nn.Dense
    loc_variance: str | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        if self.link not in LINKS:
            raise UsageError(
                f"unknown heteroscedastic link '{self.link}'; choose one of: {', '.join(LINKS)}"
            )
        k, r = self.num_classes, self.num_factors
        dense = with_dtype(self.dense, self.dtype)
        loc = with_dtype(self.loc, self.dtype)(k, name="mean")
        mean_logits, extras = loc(features, train=train)
        # The noise, its samples and the MC softmax are float32 (see mixed_precision).
        mean_logits, extras = as_float32((mean_logits, extras))

        def output(name: str, width: int) -> jax.Array:
            return dense(width, name=name)(features).astype(DELICATE)

        diag_scale = nn.softplus(output("diag_scale", k)) + self.min_scale
        factor_loadings = None
        if r > 0 and self.parameter_efficient:
            shared = self.param("factor_loadings", nn.initializers.lecun_normal(), (k, r))
            gain = output("factor_gain", k)  # [N, K]
            factor_loadings = gain[:, :, None] * shared[None]  # [N, K, R]
        elif r > 0:
            flat = output("factor_loadings", k * r)
            factor_loadings = flat.reshape(flat.shape[0], k, r)  # [N, K*R] -> [N, K, R]
        if self.loc_variance is not None and not train:
            variance = extras[self.loc_variance]
            variance = variance[:, None] if variance.ndim == 1 else variance  # [N] -> [N, 1]
            diag_scale = jnp.sqrt(jnp.square(diag_scale) + variance)
        num_samples = self.train_mc_samples if train else self.test_mc_samples
        noise = logit_noise(
            self.make_rng(self.rng_stream), diag_scale, factor_loadings, num_samples
        )
        logits = mc_link_logits(mean_logits, noise, self.temperature, self.link)
        return logits, {**extras, "logit_variance": logit_variance(diag_scale, factor_loadings)}

"""The SNGP output layer: a random-feature Gaussian process with a Laplace covariance.

SNGP [1] replaces a network's dense output layer by a Gaussian process on its
(spectral-normalized, hence distance-preserving) hidden features ``h``. With the random
Fourier features ``phi = phi(h) in R^F`` of an RBF kernel (``random_features``), the GP is
a linear model in ``phi`` with a standard normal prior on each class's weights:

    g_k(x) = phi(x)^T beta_k,    beta_k ~ N(0, I).

Training fits the weights by maximum likelihood (the usual cross-entropy). The posterior
covariance of ``beta`` comes from a Laplace approximation at the end of training,
accumulated from the features of the training examples. With ridge ``s`` and
per-example weights ``w_i``,

    P = s I + sum_i w_i phi_i phi_i^T,      Sigma = s P^{-1}.

* Shared precision (``w_i = 1``; one covariance shared by every class, as in the
  reference implementation [2]: the Laplace posterior of a Gaussian likelihood). Then
  ``Sigma`` is *exactly* the posterior covariance of a GP with kernel
  ``k(x, x') = phi(x)^T phi(x')`` and noise variance ``s``: by the push-through identity,
  ``phi_*^T Sigma phi_* = k_** - k_*^T (K + s I)^{-1} k_*`` [4].
* Per-class precision: the diagonal blocks of the Hessian of the cross-entropy give
  ``w_ik = p_ik (1 - p_ik)``, with ``p_i = softmax(g(x_i))`` (the ``"softmax"`` link) or
  ``p_ik = sigmoid(g_k(x_i))`` (``"sigmoid"``, independent labels), so
  ``P_k = s I + sum_i p_ik (1 - p_ik) phi_i phi_i^T`` (with ``s = 1``: the Laplace
  posterior of [1], Eq. 9, for each class).

``P`` starts at ``s I`` and is updated in training from each *global* batch ``B``:

* exactly: ``P <- P + sum_{i in B} w_i phi_i phi_i^T``, reset to ``s I`` at every epoch
  start (the method's ``on_epoch_start`` hook), so that at the end of an epoch it holds
  one pass over the training set with the final features;
* with momentum ``m``: ``P <- m P + (1 - m) / |B| sum_{i in B} w_i phi_i phi_i^T`` [2].

The predictive variance of each logit uses the Cholesky factor ``P = L L^T``:

    var_k(x) = s phi(x)^T P_k^{-1} phi(x) = s ||L_k^{-1} phi(x)||^2,

and the mean-field approximation [3] of the predictive distribution rescales the
posterior-mean logits, ``softmax(g(x) / sqrt(1 + lambda var(x)))`` (``lambda = pi / 8`` is
the probit approximation of MacKay [5]).

Under mixed precision (``dtype``) only the output layer ``phi^T beta`` runs in the compute
dtype: the input normalization, the random features, the precision, its Cholesky factor
and the predictive variance are float32 (``relbench.layers.mixed_precision``).

The math lives in pure functions so other heads (e.g. a heteroscedastic GP head) can
reuse it; ``RandomFeatureGaussianProcess`` is the thin Linen module on top. Its
precision lives in the non-parameter collection ``"laplace"`` (mutable in training).

References:
  [1] Liu, Lin, Padhy, Tran, Bedrax-Weiss, Lakshminarayanan. Simple and Principled
      Uncertainty Estimation with Deterministic Deep Learning via Distance Awareness.
      NeurIPS 2020. https://arxiv.org/abs/2006.10108
  [2] Edward2, ``RandomFeatureGaussianProcess`` and ``LaplaceRandomFeatureCovariance``.
      https://github.com/google/edward2/blob/main/edward2/tensorflow/layers/random_feature.py
  [3] Lu, Ie, Sha. Uncertainty Estimation with Infinitesimal Jackknife, Its
      Distribution and Mean-Field Approximation. 2020. https://arxiv.org/abs/2006.07584
  [4] Rasmussen, Williams. Gaussian Processes for Machine Learning, Eqs. 2.11 and 2.26.
      MIT Press 2006. http://gaussianprocess.org/gpml/chapters/RW2.pdf
  [5] MacKay. The Evidence Framework Applied to Classification Networks. Neural
      Computation 4(5), 1992. https://doi.org/10.1162/neco.1992.4.5.720
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from relbench.errors import UsageError
from relbench.layers.mixed_precision import DELICATE
from relbench.layers.random_features import RandomFourierFeatures

LAPLACE = "laplace"
PRECISIONS = ("shared", "per_class")
LINKS = ("softmax", "sigmoid")
PROBIT_MEAN_FIELD_FACTOR = math.pi / 8  # lambda of the probit approximation [5]

_HIGHEST = lax.Precision.HIGHEST


def init_precision(num_features: int, ridge: float, num_classes: int | None = None) -> jax.Array:
    """``s I``: ``[F, F]``, or ``[K, F, F]`` (one per class) when ``num_classes`` is given."""
    eye = ridge * jnp.eye(num_features, dtype=jnp.float32)
    return eye if num_classes is None else jnp.broadcast_to(eye, (num_classes, *eye.shape))


def reset_precision(precision: jax.Array, ridge: float) -> jax.Array:
    """``s I`` of ``precision``'s shape (the exact update's epoch-start reset)."""
    eye = ridge * jnp.eye(precision.shape[-1], dtype=precision.dtype)
    return jnp.broadcast_to(eye, precision.shape)


def hessian_weights(logits: jax.Array, link: str = "softmax") -> jax.Array:
    """``p_ik (1 - p_ik)``: ``[N, K]`` logits -> ``[N, K]`` diagonal Hessian weights of
    the softmax (``p = softmax(g)``) or sigmoid (``p = sigmoid(g)``) cross-entropy."""
    probs = jax.nn.softmax(logits, axis=-1) if link == "softmax" else jax.nn.sigmoid(logits)
    return probs * (1.0 - probs)


def precision_increment(phi: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """``sum_i w_i phi_i phi_i^T`` over the batch.

    Args:
      phi: ``[N, F]`` random features.
      weights: None (all ones) -> ``[F, F]``; ``[N, K]`` per-class weights -> ``[K, F, F]``.
    """
    if weights is None:
        return jnp.einsum("nf,ng->fg", phi, phi, precision=_HIGHEST)
    return jnp.einsum("nk,nf,ng->kfg", weights, phi, phi, precision=_HIGHEST)


def update_precision(
    precision: jax.Array,
    phi: jax.Array,
    weights: jax.Array | None = None,
    momentum: float | None = None,
) -> jax.Array:
    """One training update of the precision from a batch of features.

    Args:
      precision: ``[F, F]`` or ``[K, F, F]``.
      phi: ``[N, F]`` features of the (global) batch.
      weights: per-class weights ``[N, K]`` for a per-class precision, else None.
      momentum: None for the exact sum; ``m`` in ``[0, 1)`` for the moving average of the
        per-example mean.
    """
    increment = precision_increment(phi, weights)
    if momentum is None:
        return precision + increment
    return momentum * precision + (1.0 - momentum) * increment / phi.shape[0]


def posterior_covariance(precision: jax.Array, ridge: float) -> jax.Array:
    """``Sigma = s P^{-1}`` (``[F, F]`` or ``[K, F, F]``) by a Cholesky solve."""
    chol = jnp.linalg.cholesky(precision)
    eye = jnp.broadcast_to(jnp.eye(precision.shape[-1], dtype=precision.dtype), precision.shape)
    return ridge * jax.scipy.linalg.cho_solve((chol, True), eye)


def predictive_covariance(precision: jax.Array, phi: jax.Array, ridge: float) -> jax.Array:
    """The full covariance ``s Phi P^{-1} Phi^T`` of the logits: ``[N, N]`` (or ``[K, N, N]``)."""
    return jnp.einsum(
        "nf,...fg,mg->...nm", phi, posterior_covariance(precision, ridge), phi, precision=_HIGHEST
    )


def predictive_variance(precision: jax.Array, phi: jax.Array, ridge: float) -> jax.Array:
    """Per-example variance ``s ||L^{-1} phi(x)||^2`` of the logits.

    Args:
      precision: ``[F, F]`` (shared) or ``[K, F, F]`` (per class).
      phi: ``[N, F]``.

    Returns:
      ``[N]`` for a shared precision, ``[N, K]`` for per-class precisions.
    """
    chol = jnp.linalg.cholesky(precision)
    if precision.ndim == 2:
        whitened = jax.scipy.linalg.solve_triangular(chol, phi.T, lower=True)  # [F, N]
        return ridge * jnp.sum(whitened**2, axis=0)
    rhs = jnp.broadcast_to(phi.T, (precision.shape[0], *phi.T.shape))  # [K, F, N]
    whitened = jax.scipy.linalg.solve_triangular(chol, rhs, lower=True)  # [K, F, N]
    return ridge * jnp.sum(whitened**2, axis=1).T  # [K, N] -> [N, K]


def mean_field_logits(logits: jax.Array, variance: jax.Array, factor: float) -> jax.Array:
    """``logits / sqrt(1 + factor * variance)``; ``variance`` broadcasts against ``logits``."""
    return logits / jnp.sqrt(1.0 + factor * variance)


class RandomFeatureGaussianProcess(nn.Module):
    """The SNGP head: features ``[N, D]`` -> ``(logits [N, K], extras)``.

    In training (``train=True``) it returns the posterior-mean logits and updates the
    precision in ``"laplace"`` from this batch (the collection must be mutable). In
    evaluation it also returns ``extras["variance"]``, ``[N, K]``: the predictive variance
    of each logit (the same for every class with a shared precision).

    Attributes:
      num_classes: K.
      num_features: F, the number of random Fourier features.
      kernel_scale: the RBF length scale on the (normalized) input features.
      orthogonal_features: orthogonal random features instead of i.i.d. ones.
      normalize_input: layer-normalize the input features first.
      ridge: ``s``, the initial precision ``s I`` (and the scale of the covariance).
      momentum: None for the exact update (reset at epoch starts by the method), else
        the moving-average factor in ``[0, 1)``.
      precision: ``"shared"`` (one precision for every class) or ``"per_class"``
        (one per class, weighted by the Hessian of the ``link``'s cross-entropy).
      link: ``"softmax"`` (classes) or ``"sigmoid"`` (independent labels); it weighs a
        per-class precision.
      output_bias: whether the logits get a trainable bias.
      dtype: the compute dtype of the output layer (``None``: float32); the rest of
        the head is float32 whatever it says.
    """

    num_classes: int
    num_features: int = 1024
    kernel_scale: float = 1.0
    orthogonal_features: bool = False
    normalize_input: bool = False
    ridge: float = 1.0
    momentum: float | None = None
    precision: str = "shared"
    link: str = "softmax"
    output_bias: bool = True
    dtype: Any = None

    def _check(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"unknown GP precision '{self.precision}'; choose {' or '.join(PRECISIONS)}"
            )
        if self.link not in LINKS:
            raise UsageError(f"unknown GP link '{self.link}'; choose {' or '.join(LINKS)}")
        if not self.ridge > 0:
            raise UsageError(f"GP ridge must be > 0, got {self.ridge}")
        if self.momentum is not None and not 0.0 <= self.momentum < 1.0:
            raise UsageError(f"GP precision momentum must be in [0, 1), got {self.momentum}")

    @nn.compact
    def __call__(self, features: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
        self._check()
        x = features.astype(DELICATE)
        x = nn.LayerNorm(name="input_norm")(x) if self.normalize_input else x
        phi = RandomFourierFeatures(
            self.num_features, self.kernel_scale, self.orthogonal_features, name="features"
        )(x)
        output = nn.Dense(
            self.num_classes, use_bias=self.output_bias, dtype=self.dtype, name="output"
        )
        logits = output(phi)
        per_class = self.precision == "per_class"
        precision = self.variable(
            LAPLACE,
            "precision",
            init_precision,
            self.num_features,
            self.ridge,
            self.num_classes if per_class else None,
        )
        if train:
            phi_fixed = lax.stop_gradient(phi)
            weights = (
                hessian_weights(lax.stop_gradient(logits).astype(DELICATE), self.link)
                if per_class
                else None
            )
            precision.value = update_precision(precision.value, phi_fixed, weights, self.momentum)
            return logits, {}
        variance = predictive_variance(precision.value, phi, self.ridge)
        if not per_class:
            variance = jnp.broadcast_to(variance[:, None], logits.shape)  # [N] -> [N, K]
        return logits, {"variance": variance}

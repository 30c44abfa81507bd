"""Feature-space OOD detectors: Mahalanobis, relative Mahalanobis, DDU, KNN, ViM, ReAct.

Each is a post-hoc step fitted on the penultimate features ``f = extras["features"]``
(``[M, N, D]``) of the training set (``split="train"``: every training example once,
unaugmented) and adds a per-example score ``extras["score/<name>"]`` (``[M, B]``,
larger = more likely OOD) that the OOD tables report beside the model's own scores
(``auroc/<name>``, ``fpr95/<name>``...; ``relbench.metrics.scores``). The logits are
left as they are. A multi-member model gets one detector per member (fitted on that
member's features), and the reported score is their mean.

With class means ``mu_k`` over the ``n_k`` training examples of class ``k`` (classes
absent from training are skipped):

* ``mahalanobis`` [1]: the shared covariance ``S = 1/N sum_i (f_i - mu_{y_i})
  (f_i - mu_{y_i})^T`` and the score ``min_k (f - mu_k)^T S^+ (f - mu_k)``;
* ``relative_mahalanobis`` [2]: the same minus the distance to one background Gaussian
  fitted to all training features (mean ``mu_0``, covariance ``S_0``),
  ``min_k MD_k(f) - MD_0(f)``;
* ``ddu`` [3]: a Gaussian discriminant, one Gaussian per class (``mu_k``, covariance
  ``C_k``, below) with prior ``n_k / N``; the score is the negative log density
  ``-log sum_k pi_k N(f; mu_k, C_k)``;
* ``knn`` [4]: the distance from the unit-normalized feature to its ``k``-th nearest
  neighbour among the unit-normalized training features (the bank, at most
  ``bank_size`` evenly spaced examples); the search is a blocked top-k over the bank,
  ``block_size`` bank rows at a time, so it holds ``B x (block_size + k)`` similarities
  whatever the bank's size;
* ``vim`` [5]: with the head's logits ``l = f W + b``, origin ``u = -b W^+``, and ``R``
  the eigenvectors of the training features' covariance beyond the ``D_p =
  principal_fraction * D`` largest, the virtual logit ``alpha ||(f - u) R||``,
  ``alpha`` = mean training max-logit / mean training residual norm; the score is
  ``alpha ||(f - u) R|| - logsumexp(l)``;
* ``react`` [6]: features clipped at the ``percentile`` of the training activations,
  ``c``; the score is the energy ``-logsumexp(min(f, c) W + b)``.

ViM and ReAct need the classifier's last layer; a post-hoc step sees only outputs, so
they recover ``(W, b)`` by least squares from the training (features, logits) pairs:
exact for a dense head (every ``Classifier``'s), the best linear approximation of a
GP or other nonlinear head. List them before steps that change the member count.

DDU's class covariances. The class's empirical covariance ``S_k = 1/n_k sum_{y_i = k}
(f_i - mu_k)(f_i - mu_k)^T`` is estimated from ``n_k`` examples in ``D`` dimensions; with
``n_k`` near or below ``D`` (a few hundred examples per class of a 128- to 640-wide
feature) it is singular and its small eigenvalues are noise, which the density's
``S_k^-1`` then weighs most. ``covariance`` selects the estimator:

* ``"ledoit_wolf"`` (the default) [7]: ``C_k = (1 - s_k) S_k + s_k m_k I`` with
  ``m_k = tr(S_k) / D`` and the shrinkage that minimizes the expected Frobenius error,
  estimated in closed form: with the centred ``c_i = f_i - mu_k``,
  ``b = (1/n_k sum_i ||c_i||^4 - ||S_k||_F^2) / (D n_k)``,
  ``d = ||S_k - m_k I||_F^2 / D`` and ``s_k = min(b, d) / d`` (scikit-learn's
  ``LedoitWolf``);
* ``"oas"`` [8]: the same target with the oracle-approximating shrinkage
  ``s_k = min((a + m_k^2) / ((n_k + 1)(a - m_k^2 / D)), 1)``, ``a = ||S_k||_F^2 / D^2``
  (scikit-learn's ``OAS``), derived for Gaussian data;
* ``"empirical"``: ``C_k = S_k``, as in [3], whose reference code adds the smallest
  jitter of a grid that makes every Cholesky factorization succeed: a rule for
  ``n_k >> D`` (5,000 CIFAR-10 examples per class of 640 features).

``jitter`` times ``m_k`` is then added to the diagonal (every estimator): the floor that
keeps ``C_k`` invertible where shrinkage is zero and the features have dead units.
Measured on SNGP's spectral-normalized CNN on digits (``experiments/digits_cnn.py:sngp``
at its 10 epochs, test accuracy 1.0; ~126 training examples per class of 128 post-ReLU
features, ~75 nonzero eigenvalues per class), mean +- std over seeds 0, 1, 2:

=====================  ==================  ==============
AUROC                  near (digits 8, 9)  far (noise)
=====================  ==================  ==============
ddu, empirical         0.969 +- 0.016      0.996 +- 0.004
ddu, ledoit_wolf       0.985 +- 0.007      0.999 +- 0.002
ddu, oas               0.984 +- 0.007      0.999 +- 0.002
max probability        0.993 +- 0.002      0.995 +- 0.006
=====================  ==================  ==============

Shrinkage closes two thirds of the near-OOD gap and wins far OOD, but DDU does not
beat the softmax near: the held-out digits it misses are predicted as 3 or 5 and lie
inside those classes' feature clusters (feature collapse), where a class Gaussian of
these features cannot single them out, while the softmax still sees them between two
classes. The same held on a residual network (a spectral-normalized ResNet-8 of width
32, DDU's bi-Lipschitz premise: 0.991 +- 0.001 against 0.993 +- 0.003), after 40
epochs (seeds 0, 1: 0.989 against 0.995), and with the Gaussians fitted on the
validation split (seed 0: 0.984, 18 examples per class; 0.992 fitted on the training
set).

The fits are sums over examples (counts, class sums, scatter matrices of the features
centred at their class means, accumulated a bounded chunk of examples at a time),
except ReAct's percentile and the KNN bank, which keep the training activations
themselves. Centring first matters: the expanded ``E[f f^T] - mu mu^T`` cancels
catastrophically in float32 when the features' means dwarf their spread (a residual
network's pooled activations: negative eigenvalues, a NaN density).

References:
  [1] Lee, Lee, Lee, Shin. A Simple Unified Framework for Detecting Out-of-Distribution
      Samples and Adversarial Attacks. NeurIPS 2018. https://arxiv.org/abs/1807.03888
  [2] Ren, Fort, Liu, Roy, Padhy, Lakshminarayanan. A Simple Fix to Mahalanobis
      Distance for Improving Near-OOD Detection. 2021. https://arxiv.org/abs/2106.09022
  [3] Mukhoti, Kirsch, van Amersfoort, Torr, Gal. Deep Deterministic Uncertainty: A
      New Simple Baseline. CVPR 2023. https://arxiv.org/abs/2102.11582
  [4] Sun, Ming, Zhu, Li. Out-of-Distribution Detection with Deep Nearest Neighbors.
      ICML 2022. https://arxiv.org/abs/2204.06507
  [5] Wang, Li, Feng, Zhang. ViM: Out-Of-Distribution with Virtual-logit Matching.
      CVPR 2022. https://arxiv.org/abs/2203.10807
  [6] Sun, Guo, Li. ReAct: Out-of-distribution Detection With Rectified Activations.
      NeurIPS 2021. https://arxiv.org/abs/2111.12797
  [7] Ledoit, Wolf. A well-conditioned estimator for large-dimensional covariance
      matrices. Journal of Multivariate Analysis 88(2), 2004.
      https://doi.org/10.1016/S0047-259X(03)00096-4
  [8] Chen, Wiesel, Eldar, Hero. Shrinkage Algorithms for MMSE Covariance Estimation.
      IEEE Transactions on Signal Processing 58(10), 2010. https://arxiv.org/abs/0907.4698
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.metrics.scores import SCORE_PREFIX
from relbench.posthoc.step import Outputs, PosthocStep, Targets

FEATURES = "features"
SCATTER_VALUES = 2**24  # values of one chunk of the per-class scatter sums
COVARIANCES = ("ledoit_wolf", "oas", "empirical")
_HIGHEST = jax.lax.Precision.HIGHEST  # float32 sums of squares, also where dots default lower


def member_features(outputs: Outputs, name: str) -> jax.Array:
    _, extras = outputs
    if FEATURES not in extras:
        raise UsageError(
            f"{name} needs the model's penultimate features (extras['features']); use a "
            "relbench.models.Classifier model"
        )
    return extras[FEATURES].astype(jnp.float32)  # [M, N, D]


def class_moments(features: jax.Array, labels: jax.Array, k: int):
    """``[N, D]`` features -> counts ``[K]``, class means ``[K, D]`` and the features
    centred at their class means ``[N, D]`` (``f_i - mu_{y_i}``; absent classes have
    mean 0)."""
    one_hot = jax.nn.one_hot(labels, k)  # [N, K]
    counts = jnp.sum(one_hot, axis=0)
    means = jnp.matmul(one_hot.T, features, precision=_HIGHEST) / jnp.maximum(counts, 1.0)[:, None]
    return counts, means, features - means[labels]


def scatter(centred: jax.Array) -> jax.Array:
    """``[N, D]`` -> ``sum_i c_i c_i^T`` ``[D, D]``."""
    return jnp.matmul(centred.T, centred, precision=_HIGHEST)


def class_scatters(features: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """``[K, D, D]`` per-class ``sum_{i: y_i = k} f_i f_i^T``, as ``sum_i e_{y_i} f_i f_i^T``
    over chunks of rows whose ``[rows, K, D]`` one-hot-weighted features stay within
    ``SCATTER_VALUES`` (never the ``[rows, D, D]`` outer products: at 4,096 rows of 256
    features, vmapped over 6 members and replicated on 4 devices, those took 24 GB)."""
    n, d = features.shape
    rows = max(1, min(n, SCATTER_VALUES // (k * d)))
    pad = -n % rows
    features = jnp.pad(features, ((0, pad), (0, 0)))
    one_hot = jax.nn.one_hot(jnp.pad(labels, (0, pad), constant_values=k), k)  # padding: 0
    chunks = (features.reshape(-1, rows, d), one_hot.reshape(-1, rows, k))

    def add(total, chunk):
        f, y = chunk
        return total + jnp.einsum("ck,cd,ce->kde", y, f, f, precision=_HIGHEST), None

    total, _ = jax.lax.scan(add, jnp.zeros((k, d, d)), chunks)
    return total


def whitening(covariance: jax.Array) -> jax.Array:
    """``A [D, D]`` with ``A A^T = S^+``, the pseudo-inverse of the covariance (its
    eigenvalues below ``D * eps * max`` count as zero, as ``pinvh``'s do)."""
    values, vectors = jnp.linalg.eigh(covariance)
    cutoff = covariance.shape[-1] * jnp.finfo(covariance.dtype).eps * jnp.max(values)
    return vectors * jnp.where(values > cutoff, 1.0 / jnp.sqrt(jnp.maximum(values, cutoff)), 0.0)


def squared_distances(f: jax.Array, means: jax.Array, whiten: jax.Array) -> jax.Array:
    """``[B, D]`` features -> ``[B, K]`` ``(f - mu_k)^T S^+ (f - mu_k)``: the whitened
    differences, never the expanded square (its float32 cancellation)."""
    return jnp.sum(jnp.square((f @ whiten)[:, None, :] - means @ whiten), axis=-1)


def with_score(outputs: Outputs, name: str, score: jax.Array) -> Outputs:
    logits, extras = outputs
    return logits, {**extras, SCORE_PREFIX + name: score}


def detector_step(
    name: str,
    fit_member: Callable[[jax.Array, jax.Array, jax.Array, int], dict],
    score_member: Callable[[jax.Array, dict], jax.Array],
    split: str,
    uses_logits: bool = False,
) -> PosthocStep:
    """A detector fitted and applied member by member: ``fit_member(features [N, D],
    logits [N, K], labels [N], K) -> params``, ``score_member(features [B, D], params)
    -> [B]``."""

    def fit(outputs: Outputs, targets: Targets):
        logits, _ = outputs
        features = member_features(outputs, name)
        if uses_logits and logits.shape[0] != features.shape[0]:
            raise UsageError(
                f"{name} reads the head from {features.shape[0]} members' features and "
                f"logits, but the logits have {logits.shape[0]} members; list {name} before "
                "the post-hoc steps that change the member count"
            )
        k = logits.shape[-1]
        member_logits = logits if uses_logits else jnp.zeros((features.shape[0], 1, 1))
        return jax.vmap(lambda f, z: fit_member(f, z, targets["label"], k))(features, member_logits)

    def apply(outputs: Outputs, params) -> Outputs:
        features = member_features(outputs, name)
        return with_score(outputs, name, jax.vmap(score_member)(features, params))

    return PosthocStep(fit=fit, apply=apply, split=split)


def shared_gaussian(features, labels, k):
    counts, means, centred = class_moments(features, labels, k)
    return counts, means, scatter(centred) / features.shape[0]


def mahalanobis(split: str = "train") -> PosthocStep:
    """Args:
    split: the set the class Gaussians are fitted on (the training set).
    """

    def fit_member(features, _, labels, k):
        counts, means, covariance = shared_gaussian(features, labels, k)
        return {
            "means": means,
            "present": counts > 0,
            "whitening": whitening(covariance),
        }

    def score_member(f, params):
        distances = squared_distances(f, params["means"], params["whitening"])
        return jnp.min(jnp.where(params["present"], distances, jnp.inf), axis=-1)

    return detector_step("mahalanobis", fit_member, score_member, split)


def relative_mahalanobis(split: str = "train") -> PosthocStep:
    """Args:
    split: the set the class and background Gaussians are fitted on.
    """

    def fit_member(features, _, labels, k):
        counts, means, covariance = shared_gaussian(features, labels, k)
        mean = jnp.mean(features, axis=0)
        background = scatter(features - mean) / features.shape[0]
        return {
            "means": means,
            "present": counts > 0,
            "whitening": whitening(covariance),
            "background_mean": mean,
            "background_whitening": whitening(background),
        }

    def score_member(f, params):
        distances = squared_distances(f, params["means"], params["whitening"])
        background = squared_distances(
            f, params["background_mean"][None], params["background_whitening"]
        )[:, 0]
        return jnp.min(jnp.where(params["present"], distances, jnp.inf), axis=-1) - background

    return detector_step("relative_mahalanobis", fit_member, score_member, split)


def shrinkage(
    covariance: str, covariances: jax.Array, fourth: jax.Array, counts: jax.Array
) -> jax.Array:
    """``[K]`` the shrinkage ``s_k`` of ``covariance`` (the module docstring's formulas)
    from the empirical ``S_k`` ``[K, D, D]``, ``sum_i ||c_i||^4`` and ``n_k`` ``[K]``."""
    if covariance == "empirical":
        return jnp.zeros_like(counts)
    d = covariances.shape[-1]
    n = jnp.maximum(counts, 1.0)
    mean_variance = jnp.trace(covariances, axis1=1, axis2=2) / d
    frobenius = jnp.sum(jnp.square(covariances), axis=(1, 2))  # ||S_k||_F^2
    if covariance == "oas":
        alpha = frobenius / d**2
        numerator = alpha + jnp.square(mean_variance)
        denominator = (n + 1.0) * (alpha - jnp.square(mean_variance) / d)
        safe = jnp.where(denominator > 0, denominator, 1.0)
        return jnp.where(denominator > 0, jnp.minimum(numerator / safe, 1.0), 1.0)
    spread = (frobenius - d * jnp.square(mean_variance)) / d  # ||S_k - m_k I||_F^2 / D
    beta = jnp.minimum((fourth / n - frobenius) / (d * n), spread)
    return jnp.where(spread > 0, beta / jnp.where(spread > 0, spread, 1.0), 0.0)


def ddu(split: str = "train", covariance: str = "ledoit_wolf", jitter: float = 1e-4) -> PosthocStep:
    """Args:
    split: the set the class Gaussians are fitted on.
    covariance: the class covariances' estimator: ``"ledoit_wolf"``, ``"oas"`` (both
      shrink towards the mean variance) or ``"empirical"`` (the module docstring).
    jitter: added to each class covariance's diagonal, times its mean variance.
    """
    if jitter <= 0:
        raise UsageError(f"ddu needs jitter > 0, got {jitter}")
    if covariance not in COVARIANCES:
        raise UsageError(
            f"unknown ddu covariance '{covariance}'; choose one of: {', '.join(COVARIANCES)}"
        )

    def fit_member(features, _, labels, k):
        counts, means, centred = class_moments(features, labels, k)
        d = features.shape[-1]
        n_k = jnp.maximum(counts, 1.0)
        covariances = class_scatters(centred, labels, k) / n_k[:, None, None]
        squared_norms = jnp.sum(jnp.square(centred), axis=-1)  # ||c_i||^2
        fourth = jax.ops.segment_sum(jnp.square(squared_norms), labels, k)
        s = shrinkage(covariance, covariances, fourth, counts)[:, None, None]
        scale = jnp.trace(covariances, axis1=1, axis2=2)[:, None, None] / d  # m_k
        diagonal = (s + jitter) * scale + 1e-12
        covariances = (1.0 - s) * covariances + diagonal * jnp.eye(d)  # C_k
        values, vectors = jnp.linalg.eigh(covariances)  # [K, D], [K, D, D]
        whitening = vectors / jnp.sqrt(values)[:, None, :]  # W_k W_k^T = C_k^-1
        log_det = jnp.sum(jnp.log(values), axis=-1)
        log_prior = jnp.where(counts > 0, jnp.log(counts / jnp.sum(counts)), -jnp.inf)
        return {
            "means": means,
            "whitening": whitening,
            "log_normalizer": log_prior - 0.5 * (log_det + d * math.log(2 * math.pi)),
        }

    def score_member(f, params):
        centred = f[:, None, :] - params["means"]  # [B, K, D]
        whitened = jnp.einsum("bkd,kde->bke", centred, params["whitening"])
        log_density = params["log_normalizer"] - 0.5 * jnp.sum(jnp.square(whitened), axis=-1)
        return -jax.nn.logsumexp(log_density, axis=-1)

    return detector_step("ddu", fit_member, score_member, split)


def unit(f: jax.Array) -> jax.Array:
    return f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)


def blocked_top_k_similarity(queries: jax.Array, bank: jax.Array, k: int, block_size: int):
    """``[B, k]`` the largest inner products of each query with the bank's ``[N, D]``
    rows, ``block_size`` rows at a time (a running top-k; the padding never wins)."""
    n, d = bank.shape
    pad = -n % block_size
    blocks = jnp.pad(bank, ((0, pad), (0, 0))).reshape(-1, block_size, d)
    valid = (jnp.arange(n + pad) < n).reshape(-1, block_size)

    def merge(best, block):
        rows, keep = block
        similarities = jnp.where(keep, queries @ rows.T, -jnp.inf)  # [B, block]
        return jax.lax.top_k(jnp.concatenate([best, similarities], axis=-1), k)[0], None

    init = jnp.full((queries.shape[0], k), -jnp.inf)
    best, _ = jax.lax.scan(merge, init, (blocks, valid))
    return best


def knn(
    split: str = "train", k: int = 50, bank_size: int = 100_000, block_size: int = 4096
) -> PosthocStep:
    """Args:
    split: the set whose features form the bank.
    k: the neighbour whose distance is the score.
    bank_size: at most this many training examples (evenly spaced) in the bank.
    block_size: bank rows compared at once: memory ``B x (block_size + k)``.
    """
    if k < 1 or bank_size < k or block_size < 1:
        raise UsageError(
            f"knn needs k >= 1, bank_size >= k and block_size >= 1, got {k}, {bank_size}, "
            f"{block_size}"
        )

    def fit_member(features, _, labels, num_classes):
        n = features.shape[0]
        if n < k:
            raise UsageError(f"knn with k={k} needs at least k examples in '{split}', it has {n}")
        keep = jnp.linspace(0, n - 1, min(n, bank_size)).round().astype(jnp.int32)
        return {"bank": unit(features[keep])}

    def score_member(f, params):
        similarity = blocked_top_k_similarity(unit(f), params["bank"], k, block_size)[:, -1]
        return jnp.sqrt(jnp.maximum(2.0 - 2.0 * similarity, 0.0))  # unit-vector distance

    return detector_step("knn", fit_member, score_member, split)


def linear_head(features: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(W [D, K], b [K])`` with ``logits ~ f W + b``, by least squares."""
    design = jnp.concatenate([features, jnp.ones((features.shape[0], 1))], axis=-1)
    solution = jnp.linalg.lstsq(design, logits)[0]  # [D + 1, K]
    return solution[:-1], solution[-1]


def vim(split: str = "train", principal_fraction: float = 0.5) -> PosthocStep:
    """Args:
    split: the set the principal space and ``alpha`` are fitted on.
    principal_fraction: ``D_p / D``, the share of feature directions kept as principal.
    """
    if not 0.0 < principal_fraction < 1.0:
        raise UsageError(f"vim needs 0 < principal_fraction < 1, got {principal_fraction}")

    def fit_member(features, logits, labels, k):
        weight, bias = linear_head(features, logits)
        origin = -bias @ jnp.linalg.pinv(weight)
        d = features.shape[-1]
        principal = min(max(round(principal_fraction * d), 1), d - 1)
        _, vectors = jnp.linalg.eigh(jnp.cov(features, rowvar=False))  # ascending
        residual_space = vectors[:, : d - principal]
        norms = jnp.linalg.norm((features - origin) @ residual_space, axis=-1)
        alpha = jnp.mean(jnp.max(features @ weight + bias, axis=-1)) / jnp.mean(norms)
        return {
            "weight": weight,
            "bias": bias,
            "origin": origin,
            "residual_space": residual_space,
            "alpha": alpha,
        }

    def score_member(f, params):
        virtual = params["alpha"] * jnp.linalg.norm(
            (f - params["origin"]) @ params["residual_space"], axis=-1
        )
        return virtual - jax.nn.logsumexp(f @ params["weight"] + params["bias"], axis=-1)

    return detector_step("vim", fit_member, score_member, split, uses_logits=True)


def react(split: str = "train", percentile: float = 90.0) -> PosthocStep:
    """Args:
    split: the set whose activations set the clipping threshold.
    percentile: the percentile of the training activations features are clipped at.
    """
    if not 0.0 < percentile <= 100.0:
        raise UsageError(f"react needs 0 < percentile <= 100, got {percentile}")

    def fit_member(features, logits, labels, k):
        weight, bias = linear_head(features, logits)
        return {"weight": weight, "bias": bias, "threshold": jnp.percentile(features, percentile)}

    def score_member(f, params):
        clipped = jnp.minimum(f, params["threshold"])
        return -jax.nn.logsumexp(clipped @ params["weight"] + params["bias"], axis=-1)

    return detector_step("react", fit_member, score_member, split, uses_logits=True)

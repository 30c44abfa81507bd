"""Laplace approximation [1, 2] as a post-hoc step: the last layer (this module) or,
with ``subset="all"`` or parameter path prefixes, the whole network or a subnetwork
(``relbench.posthoc.network_laplace``, over the GGN of ``network_curvature``; the
evidence and its tuning below are shared).

The model's head is linear in the penultimate features, ``f = W^T phi`` with the bias
folded in (``phi = [features, 1]``, ``W [D+1, K]``, flattened row-major). The step
recovers the MAP head ``W*`` from the split's features and logits by least squares
(exact for a dense head; the fit checks the residual), and approximates the posterior
over the head by

    q(W) = N(W*, (H + delta I)^-1),   H = sum_n J_n^T Lambda_n J_n,   J_n = phi_n^T (x) I_K,

the generalized Gauss-Newton (GGN) of the likelihood, ``Lambda_n = diag(p_n) - p_n p_n^T``
the softmax's Hessian (for a linear head the GGN is the exact Hessian), and an
isotropic Gaussian prior of precision ``delta``. ``H`` is kept in one of four
structures, each as an eigen-decomposition so that every quantity below is a function
of ``delta`` without refactorizing:

* ``full``: ``H`` itself, ``[P, P]`` with ``P = (D+1) K``; last layers of small heads;
* ``diag``: its diagonal, ``sum_n phi_nd^2 Lambda_n,kk``;
* ``kfac``: the Kronecker factorization [3] ``H ~= A (x) G`` with
  ``A = sum_n phi_n phi_n^T`` and ``G = 1/N sum_n Lambda_n`` (exact for one example);
  eigenvalues ``a_i g_j``, memory ``O(D^2 + K^2)``, so a 1,000-class head over 2,048
  features takes two small matrices rather than a ``2e6 x 2e6`` one;
* ``lowrank``: the top ``rank`` eigenpairs of ``H`` by Lanczos iteration [4] with full
  reorthogonalization, using only GGN-vector products; the rest of the spectrum is
  taken as 0 (the prior alone).

**Prior precision** ``delta`` is tuned (``prior_tuning``) by the Laplace evidence [1]

    log p(D | delta) ~= log p(D | W*) - delta/2 ||W*||^2 + P/2 log delta
                        - 1/2 sum_i log(lambda_i + delta),

maximized over ``log delta`` by gradient ascent (``"marglik"``, Adam) or on a grid
refined by golden-section search (``"marglik_grid"``), or by the predictive NLL on the
fit split (``"nll"``, the default: the step fits on held-out data, and on digits the
evidence of a head fitted to 250 validation examples chose a prior precision that
raised the test NLL), or kept at ``prior_precision`` (``"none"``).

**Predictive** (``link``): with the logit mean ``mu = W*^T phi`` and variances
``s^2 = diag(J Sigma J^T)``,

* ``probit``: the mean-field approximation ``softmax(mu / sqrt(1 + pi/8 s^2))`` [5];
* ``bridge``: the Laplace bridge [6], a Dirichlet with
  ``alpha_k = (1 - 2/K + e^{mu_k} / K^2 sum_l e^{-mu_l}) / s_k^2``, predictive
  ``alpha / sum(alpha)``;
* ``mc``: ``num_samples`` draws of the head from ``q``, each a member: the output logits
  are ``[S*M, N, K]``.

Members (``M > 1``) get one Laplace approximation each.

References:
  [1] MacKay. A Practical Bayesian Framework for Backpropagation Networks. Neural
      Computation 1992. https://doi.org/10.1162/neco.1992.4.3.448
  [2] Daxberger, Kristiadi, Immer, Eschenhagen, Bauer, Hennig. Laplace Redux -
      Effortless Bayesian Deep Learning. NeurIPS 2021. https://arxiv.org/abs/2106.14806
  [3] Ritter, Botev, Barber. A Scalable Laplace Approximation for Neural Networks. ICLR
      2018. https://openreview.net/forum?id=Skdvd2xAZ
  [4] Lanczos. An iteration method for the solution of the eigenvalue problem of linear
      differential and integral operators. J. Res. Nat. Bur. Standards 1950.
  [5] Lu, Ie, Sha. Uncertainty Estimation with Infinitesimal Jackknife, Its
      Distribution and Mean-Field Approximation. 2020. https://arxiv.org/abs/2006.07584
  [6] Hobbhahn, Kristiadi, Hennig. Fast Predictive Uncertainty for Classification with
      Bayesian Deep Networks. UAI 2022. https://arxiv.org/abs/2003.01227
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from absl import logging

from relbench.errors import UsageError
from relbench.posthoc import network_laplace
from relbench.posthoc.step import NetworkFit, Outputs, PosthocStep, Targets
from relbench.posthoc.temperature_scaling import minimize, target_distributions

STRUCTURES = ("full", "diag", "kfac", "lowrank")
TUNINGS = ("marglik", "marglik_grid", "nll", "none")
LINKS = ("probit", "bridge", "mc")
NETWORK_TUNINGS = ("marglik", "marglik_grid", "none")  # "nll" would rerun the network


def augment(features: jax.Array) -> jax.Array:
    """``[N, D] -> [N, D+1]``: the features with a constant 1 (the bias)."""
    return jnp.concatenate([features, jnp.ones(features.shape[:-1] + (1,), features.dtype)], -1)


def map_head(phi: jax.Array, logits: jax.Array) -> jax.Array:
    """The head ``W [D+1, K]`` with ``phi W = logits``, by least squares."""
    return jnp.linalg.lstsq(phi, logits)[0]


def softmax_hessian(probs: jax.Array) -> jax.Array:
    """``Lambda = diag(p) - p p^T`` per example: ``[N, K] -> [N, K, K]``."""
    return jax.vmap(jnp.diag)(probs) - probs[:, :, None] * probs[:, None, :]


def ggn_vector_product(phi: jax.Array, probs: jax.Array, v: jax.Array) -> jax.Array:
    """``H v`` for ``v [D+1, K]``: ``sum_n phi_n (Lambda_n (phi_n^T v))^T``."""
    z = phi @ v  # [N, K]
    u = probs * z - probs * jnp.sum(probs * z, -1, keepdims=True)  # Lambda_n z_n
    return phi.T @ u


def full_ggn(phi: jax.Array, probs: jax.Array) -> jax.Array:
    """``H [P, P]`` (row-major ``(d, k)``): ``sum_n (phi_n phi_n^T) (x) Lambda_n``."""
    d, k = phi.shape[1], probs.shape[1]
    diagonal = jnp.einsum("nd,ne,nk->dke", phi, phi, probs)  # [D, K, D]: the diag(p) part
    eye = jnp.eye(k, dtype=phi.dtype)
    first = diagonal[:, :, :, None] * eye[None, :, None, :]  # [D, K, D, K]
    outer = (phi[:, :, None] * probs[:, None, :]).reshape(-1, d * k)  # [N, P]: phi (x) p
    return first.reshape(d * k, d * k) - outer.T @ outer


def kfac_factors(phi: jax.Array, probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``A = sum_n phi_n phi_n^T`` ``[D+1, D+1]`` and ``G = 1/N sum_n Lambda_n`` ``[K, K]``."""
    a = phi.T @ phi
    g = (jnp.diag(probs.sum(0)) - probs.T @ probs) / phi.shape[0]
    return a, g


def lanczos(matvec, size: int, rank: int, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The top-``rank`` Ritz pairs of a symmetric operator: ``(values [R], vectors [R, size])``,
    from ``rank`` Lanczos steps with full reorthogonalization."""
    q0 = jax.random.normal(key, (size,))
    q0 = q0 / jnp.linalg.norm(q0)

    def step(carry, i):
        basis, previous_beta = carry
        q = basis[i]
        w = matvec(q)
        alpha = q @ w
        w = w - basis.T @ (basis @ w)  # full reorthogonalization (rows beyond i are 0)
        w = w - basis.T @ (basis @ w)
        beta = jnp.linalg.norm(w)
        basis = basis.at[i + 1].set(jnp.where(beta > 1e-10, w / jnp.maximum(beta, 1e-30), 0.0))
        return (basis, beta), (alpha, beta)

    basis = jnp.zeros((rank + 1, size)).at[0].set(q0)
    (basis, _), (alphas, betas) = jax.lax.scan(step, (basis, 0.0), jnp.arange(rank))
    tridiagonal = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    values, vectors = jnp.linalg.eigh(tridiagonal)
    return jnp.maximum(values, 0.0), vectors.T @ basis[:rank]


def fit_curvature(structure: str, phi: jax.Array, probs: jax.Array, rank: int, key) -> dict:
    """The eigen-decomposed GGN of one member in the chosen structure."""
    d, k = phi.shape[1], probs.shape[1]
    if structure == "full":
        values, vectors = jnp.linalg.eigh(full_ggn(phi, probs))
        return {"values": jnp.maximum(values, 0.0), "vectors": vectors.T}  # rows: eigvecs
    if structure == "diag":
        variance = probs * (1.0 - probs)  # Lambda_n,kk
        return {"values": jnp.square(phi).T @ variance}  # [D+1, K]
    if structure == "kfac":
        a, g = kfac_factors(phi, probs)
        a_values, a_vectors = jnp.linalg.eigh(a)
        g_values, g_vectors = jnp.linalg.eigh(g)
        return {
            "a_values": jnp.maximum(a_values, 0.0),
            "a_vectors": a_vectors,
            "g_values": jnp.maximum(g_values, 0.0),
            "g_vectors": g_vectors,
        }

    def matvec(v):
        return ggn_vector_product(phi, probs, v.reshape(d, k)).reshape(-1)

    values, vectors = lanczos(matvec, d * k, rank, key)
    return {"values": values, "vectors": vectors}


def eigenvalues(structure: str, curvature: dict) -> jax.Array:
    """The (retained) spectrum of ``H``; the other ``P - len`` eigenvalues are 0."""
    if structure == "kfac":
        return jnp.outer(curvature["a_values"], curvature["g_values"]).reshape(-1)
    return curvature["values"].reshape(-1)


def evidence(log_delta, spectrum: jax.Array, size: int, squared_norm, log_lik) -> jax.Array:
    """The Laplace approximation of ``log p(D | delta)`` (module docstring), up to a
    constant in ``delta``, from the retained ``spectrum`` of ``H`` (the other
    ``size - len(spectrum)`` eigenvalues are 0) and ``||theta*||^2``."""
    delta = jnp.exp(log_delta)
    rest = size - spectrum.size  # eigenvalues taken as 0: log(0 + delta) each
    log_det = jnp.sum(jnp.log(spectrum + delta)) + rest * log_delta
    return log_lik - 0.5 * delta * squared_norm + 0.5 * size * log_delta - 0.5 * log_det


def log_evidence(
    log_delta: jax.Array, structure: str, curvature: dict, head: jax.Array, log_lik: jax.Array
) -> jax.Array:
    """``evidence`` of the last-layer head."""
    spectrum = eigenvalues(structure, curvature)
    return evidence(log_delta, spectrum, head.size, jnp.sum(jnp.square(head)), log_lik)


def tune_log_prior_precision(
    tuning: str, objective, start, low: float, high: float, steps: int
) -> jax.Array:
    """``log delta`` minimizing ``objective`` (the negative evidence, or the NLL) on
    ``[low, high]``: by Adam (``"marglik"``), on a grid refined by golden section
    (``"marglik_grid"``, ``"nll"``), or ``start`` (``"none"``)."""
    if tuning == "none":
        return jnp.asarray(start, jnp.float32)
    if tuning != "marglik":
        return minimize(objective, low, high, 64)
    optimizer = optax.adam(0.1)

    def descend(carry, _):
        u, state = carry
        updates, state = optimizer.update(jax.grad(objective)(u), state)
        return (jnp.clip(optax.apply_updates(u, updates), low, high), state), None

    start = jnp.asarray(start, jnp.float32)
    (log_delta, _), _ = jax.lax.scan(descend, (start, optimizer.init(start)), None, length=steps)
    return log_delta


def logit_variance(structure: str, curvature: dict, phi: jax.Array, delta) -> jax.Array:
    """``diag(J_n Sigma J_n^T)`` for every row: ``[N, D+1] -> [N, K]``."""
    if structure == "diag":
        return jnp.square(phi) @ (1.0 / (curvature["values"] + delta))
    if structure == "kfac":
        c = jnp.square(phi @ curvature["a_vectors"])  # [N, D+1]
        inverse = 1.0 / (jnp.outer(curvature["a_values"], curvature["g_values"]) + delta)
        return (c @ inverse) @ jnp.square(curvature["g_vectors"]).T  # [N, K]
    k = curvature["vectors"].shape[-1] // phi.shape[-1]
    vectors = curvature["vectors"].reshape(-1, phi.shape[-1], k)  # [R, D+1, K]
    jv = jnp.einsum("nd,rdk->nkr", phi, vectors)  # [N, K, R]
    inverse = 1.0 / (curvature["values"] + delta)
    variance = jnp.einsum("nkr,r->nk", jnp.square(jv), inverse)
    if structure == "lowrank":  # the complement of the Ritz vectors has variance 1/delta
        complement = jnp.sum(jnp.square(phi), -1, keepdims=True) - jnp.sum(jnp.square(jv), -1)
        variance = variance + jnp.maximum(complement, 0.0) / delta
    return variance


def sample_head(structure: str, curvature: dict, head: jax.Array, delta, key) -> jax.Array:
    """One draw ``W ~ N(W*, (H + delta I)^-1)``, ``[D+1, K]``."""
    if structure == "diag":
        z = jax.random.normal(key, head.shape)
        return head + z / jnp.sqrt(curvature["values"] + delta)
    if structure == "kfac":
        z = jax.random.normal(key, head.shape)
        scales = 1.0 / jnp.sqrt(jnp.outer(curvature["a_values"], curvature["g_values"]) + delta)
        return head + curvature["a_vectors"] @ (z * scales) @ curvature["g_vectors"].T
    vectors, values = curvature["vectors"], curvature["values"]
    k1, k2 = jax.random.split(key)
    z = jax.random.normal(k1, values.shape)
    draw = (z / jnp.sqrt(values + delta)) @ vectors
    if structure == "lowrank":
        rest = jax.random.normal(k2, (head.size,))
        draw = draw + (rest - (vectors @ rest) @ vectors) / jnp.sqrt(delta)
    return head + draw.reshape(head.shape)


def link_log_probs(link: str, mean: jax.Array, variance: jax.Array) -> jax.Array:
    """``[N, K]`` log predictive probabilities from logit means and variances."""
    if link == "probit":
        return jax.nn.log_softmax(mean / jnp.sqrt(1.0 + math.pi / 8.0 * variance), -1)
    k = mean.shape[-1]
    total = jnp.sum(jnp.exp(-mean), -1, keepdims=True)
    alpha = (1.0 - 2.0 / k + jnp.exp(mean) * total / k**2) / jnp.maximum(variance, 1e-12)
    return jnp.log(alpha) - jnp.log(jnp.sum(alpha, -1, keepdims=True))


def make(
    split: str = "validation",
    subset: str = "last_layer",
    structure: str = "kfac",
    rank: int = 20,
    prior_precision: float = 1.0,
    prior_tuning: str = "nll",
    link: str = "probit",
    num_samples: int = 32,
    seed: int = 0,
    tuning_steps: int = 200,
    min_prior_precision: float = 1e-4,
    max_prior_precision: float = 1e4,
) -> PosthocStep:
    """Args:
    split: the evaluation set the Laplace approximation is fitted on.
    subset: the parameters it covers: ``"last_layer"`` (from the outputs and penultimate
      features), ``"all"``, or path prefixes of the parameter tree (``"Dense_0,
      DenseHead_0"``), each a module or a parameter: a network subset reruns the
      network (``PosthocStep.network``) and must be the first post-hoc step.
    structure: ``"full"``, ``"diag"``, ``"kfac"`` or ``"lowrank"`` (module docstring);
      a network subset: ``"kfac"`` or ``"diag"``.
    rank: Lanczos steps (retained eigenpairs) of ``"lowrank"``.
    prior_precision: ``delta``, the start (or, with ``"none"``, the value).
    prior_tuning: ``"marglik"`` (gradient), ``"marglik_grid"``, ``"nll"`` or ``"none"``
      (a network subset: not ``"nll"``, which would rerun the network per candidate).
    link: ``"probit"``, ``"bridge"`` or ``"mc"``; a network subset: ``"glm"`` or ``"mc"``.
    num_samples: weight samples of the ``"mc"`` / ``"glm"`` links (each a member).
    seed: the key of Lanczos' start vector and of the ``"mc"`` samples.
    tuning_steps: Adam steps of ``"marglik"``.
    min_prior_precision, max_prior_precision: the search range of ``delta``.
    """
    network = subset != "last_layer"
    if network:  # the structures, tunings and links defined over a network's parameters
        structures, tunings, links = (
            network_laplace.STRUCTURES,
            NETWORK_TUNINGS,
            network_laplace.LINKS,
        )
    else:
        structures, tunings, links = STRUCTURES, TUNINGS, LINKS
    for name, value, valid in (
        ("structure", structure, structures),
        ("prior_tuning", prior_tuning, tunings),
        ("link", link, links),
    ):
        if value not in valid:
            raise UsageError(
                f"laplace {name} '{value}' is unknown with subset '{subset}'; choose one "
                f"of: {', '.join(valid)}"
            )
    if not 0 < min_prior_precision <= prior_precision <= max_prior_precision:
        raise UsageError(
            "laplace needs 0 < min_prior_precision <= prior_precision <= max_prior_precision"
        )
    if rank < 1 or num_samples < 1:
        raise UsageError(f"laplace needs rank >= 1 and num_samples >= 1, got {rank}, {num_samples}")
    key = jax.random.key(seed)
    low, high = math.log(min_prior_precision), math.log(max_prior_precision)
    start = math.log(prior_precision)
    if network:

        def tune(spectrum, size, squared_norm, log_lik):
            def objective(u):
                return -evidence(u, spectrum, size, squared_norm, log_lik)

            return tune_log_prior_precision(prior_tuning, objective, start, low, high, tuning_steps)

        laplace = network_laplace.NetworkLaplace(subset, structure, link, num_samples, key, tune)
        return PosthocStep(
            fit=_reads_the_network,
            apply=_reads_the_network,
            split=split,
            network=NetworkFit(laplace.init, laplace.accumulate, laplace.finish, laplace.apply),
        )

    def fit_member(features, logits, distributions):
        phi = augment(features)  # [N, D+1]
        head = map_head(phi, logits)  # [D+1, K]
        fitted = phi @ head
        residual = jnp.max(jnp.abs(fitted - logits)) / (jnp.max(jnp.abs(logits)) + 1e-6)
        probs = jax.nn.softmax(fitted, -1)
        curvature = fit_curvature(structure, phi, probs, rank, key)
        log_lik = jnp.sum(distributions * jax.nn.log_softmax(fitted, -1))

        def log_evidence_of(u):
            return log_evidence(u, structure, curvature, head, log_lik)

        def nll(u):
            variance = logit_variance(structure, curvature, phi, jnp.exp(u))
            log_probs = link_log_probs("probit" if link == "mc" else link, fitted, variance)
            return -jnp.mean(jnp.sum(distributions * log_probs, -1))

        objective = nll if prior_tuning == "nll" else lambda u: -log_evidence_of(u)
        log_delta = tune_log_prior_precision(
            prior_tuning, objective, start, low, high, tuning_steps
        )
        return {"head": head, "curvature": curvature, "log_prior_precision": log_delta}, residual

    def fit(outputs: Outputs, targets: Targets) -> dict[str, Any]:
        logits, extras = outputs
        if "features" not in extras:
            raise UsageError("laplace needs the model's penultimate features (extras['features'])")
        distributions = target_distributions(targets, logits.shape[-1])
        fitted, residual = jax.vmap(fit_member, in_axes=(0, 0, None))(
            extras["features"], logits, distributions
        )
        jax.debug.callback(_warn_not_linear, jnp.max(residual))
        return fitted

    def apply_member(params, features):
        phi = augment(features)
        delta = jnp.exp(params["log_prior_precision"])
        mean = phi @ params["head"]
        if link == "mc":
            keys = jax.random.split(key, num_samples)
            heads = jax.vmap(
                lambda k: sample_head(structure, params["curvature"], params["head"], delta, k)
            )(keys)
            return jnp.einsum("nd,sdk->snk", phi, heads)  # [S, N, K]
        variance = logit_variance(structure, params["curvature"], phi, delta)
        return link_log_probs(link, mean, variance)[None]  # [1, N, K]

    def apply(outputs: Outputs, params) -> Outputs:
        _, extras = outputs
        logits = jax.vmap(apply_member)(params, extras["features"])  # [M, S, N, K]
        members = logits.shape[1]
        # [M, S, N, K] -> [M*S, N, K]; every extra is repeated for the samples of its member.
        extras = {k: jnp.repeat(v, members, axis=0) for k, v in extras.items()}
        return logits.reshape((-1,) + logits.shape[2:]), extras

    return PosthocStep(fit=fit, apply=apply, split=split)


def _warn_not_linear(residual) -> None:
    if float(residual) > 1e-3:
        logging.warning(
            "laplace: the logits are not a linear function of extras['features'] (relative "
            "residual %.3g); last-layer Laplace assumes a dense head",
            float(residual),
        )


def _reads_the_network(*_):
    raise UsageError(
        "laplace with a network subset reads the network's parameters: the loop fits and "
        "applies it through PosthocStep.network (fit and apply see only outputs)"
    )

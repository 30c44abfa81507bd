"""Calibration maps beyond one temperature: vector, matrix and Dirichlet scaling,
histogram binning, isotonic regression and Platt scaling.

Each is a post-hoc step (``relbench.posthoc.step``) fitted on a held-out split (the
validation set by default) and applied to every output of any method. With member
logits ``z_m`` (``[M, N, K]``), member distributions ``p_m = softmax(z_m)`` and the
predictive ``p = 1/M sum_m p_m``:

* ``vector_scaling`` [1]: ``z' = w * z + b`` (``w, b`` in R^K), the NLL minimized;
* ``matrix_scaling`` [1, 2]: ``z' = W z + b``, ``W`` in R^{KxK}, with the off-diagonal
  and intercept regularizer (ODIR) of [2]:
  ``NLL + lambda / (K (K - 1)) sum_{i != j} W_ij^2 + mu / K sum_j b_j^2``;
* ``dirichlet_calibration`` [2]: the same linear map and ODIR on ``log p`` instead of
  the logits, ``p' = softmax(W log p + b)`` (a Dirichlet-family map of the simplex);
* ``histogram_binning`` [3]: for every class ``k`` (one-vs-rest), ``[0, 1]`` is cut
  into ``num_bins`` equal-width bins of ``p_k`` and each bin maps to the frequency of
  class ``k`` among the fit examples that fall in it (an empty bin maps to its centre);
* ``isotonic`` [4]: for every class, the non-decreasing function of ``p_k`` closest in
  squared error to ``1[y = k]`` (pool-adjacent-violators, tied scores pooled first),
  evaluated between the fitted points by linear interpolation and clipped at the ends,
  as scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` (the fit is scipy's
  ``isotonic_regression``, run on the host: the algorithm is sequential);
* ``platt`` [5]: ``sigma(a_k s_k + b_k)`` with ``s_k`` the log-odds of ``p_k``, ``a_k,
  b_k`` by logistic regression (Newton's method) against ``1[y = k]`` (plain 0/1
  targets). For a binary classifier (K = 2) one map is fitted, on class 1; for
  multi-label models (K sigmoids) each label gets its own; for K > 2 classes it is the
  one-vs-rest extension [4].

The one-vs-rest maps (histogram, isotonic, Platt for K > 2) are renormalized over the
classes; every map that outputs probabilities floors them at ``PROBABILITY_FLOOR``
before renormalizing, so that an empty or all-negative bin never gives a finite model
an infinite NLL. The linear maps are fitted by L-BFGS (optax, zoom line search) to a
gradient norm of ``tolerance`` or ``max_iterations`` steps.

**Members.** ``level`` says how a multi-member method (ensembles, MC dropout, SWAG...)
is calibrated:

* ``"ensemble"`` (the default): the map is fitted against the predictive distribution.
  The logit maps (vector, matrix) transform every member's logits with the one map
  and minimize the NLL of the members' mixture, as temperature scaling does, so the
  members and their diversity stay; the probability maps (Dirichlet, histogram,
  isotonic, Platt) transform ``p`` itself and return one member, whose softmax is the
  calibrated distribution (member-diversity metrics then read 0).
* ``"member"``: the map is fitted on every member's outputs pooled (``M N`` examples,
  each member's ``p_m`` against the label) and applied to each member; the predictive
  distribution is the mean of the calibrated members.

Every fit reduces the split to sums (NLL sums, per-bin counts) or, for isotonic
regression, one sort of it, so it runs on the replicated or sharded arrays the loop
gives it alike.

References:
  [1] Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
      https://arxiv.org/abs/1706.04599
  [2] Kull, Perello-Nieto, Kaengsepp, Silva Filho, Song, Flach. Beyond temperature
      scaling: Obtaining well-calibrated multiclass probabilities with Dirichlet
      calibration. NeurIPS 2019. https://arxiv.org/abs/1910.12656
  [3] Zadrozny, Elkan. Obtaining calibrated probability estimates from decision trees
      and naive Bayesian classifiers. ICML 2001.
  [4] Zadrozny, Elkan. Transforming classifier scores into accurate multiclass
      probability estimates. KDD 2002. https://doi.org/10.1145/775047.775151
  [5] Platt. Probabilistic outputs for support vector machines and comparisons to
      regularized likelihood methods. Advances in Large Margin Classifiers, 1999.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import optimize

from relbench.errors import UsageError
from relbench.metrics.predictive import multilabel_log_probs, predictive_log_probs
from relbench.posthoc.step import Outputs, PosthocStep, Targets
from relbench.posthoc.temperature_scaling import target_distributions

LEVELS = ("ensemble", "member")
PROBABILITY_FLOOR = 1e-6


def check_level(name: str, level: str) -> None:
    if level not in LEVELS:
        raise UsageError(f"{name} needs level 'ensemble' or 'member', got '{level}'")


# ---------------------------------------------------------------- linear maps


def minimize_lbfgs(objective: Callable, init, max_iterations: int, tolerance: float):
    """``objective``'s minimizer from ``init`` by L-BFGS, stopped at a gradient norm of
    ``tolerance`` or after ``max_iterations`` steps."""
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(
            grad, state, params, value=value, grad=grad, value_fn=objective
        )
        return optax.apply_updates(params, updates), state

    def running(carry):
        _, state = carry
        count = optax.tree_utils.tree_get(state, "count")
        grad = optax.tree_utils.tree_get(state, "grad")
        return (count == 0) | (
            (count < max_iterations) & (optax.tree_utils.tree_norm(grad) >= tolerance)
        )

    params, _ = jax.lax.while_loop(running, step, (init, solver.init(init)))
    return params


def linear_map(params, x: jax.Array) -> jax.Array:
    """``[..., K]`` -> ``[..., K]``: ``w * x + b`` (``weight`` [K]) or ``x W^T + b``."""
    weight = params["weight"]
    if weight.ndim == 1:
        return x * weight + params["bias"]
    return x @ weight.T + params["bias"]


def odir(params, off_diagonal: float, bias: float) -> jax.Array:
    """Kull et al.'s regularizer: mean squared off-diagonal weight and mean squared bias."""
    weight = params["weight"]
    k = weight.shape[-1]
    penalty = bias * jnp.mean(jnp.square(params["bias"]))
    if weight.ndim == 2 and k > 1:
        off = jnp.sum(jnp.square(weight)) - jnp.sum(jnp.square(jnp.diagonal(weight)))
        penalty = penalty + off_diagonal * off / (k * (k - 1))
    return penalty


def linear_map_objective(params, inputs, targets, *, mixture: bool, off_diagonal, bias):
    """Mean NLL of ``[M, N, K]`` inputs through the map: of the members' mixture
    (``mixture``) or of every member pooled; plus the ODIR penalty."""
    mapped = linear_map(params, inputs)
    if mixture:
        log_probs = predictive_log_probs(mapped)[None]  # [N, K] -> [1, N, K]
    else:
        log_probs = jax.nn.log_softmax(mapped, axis=-1)
    nll = -jnp.mean(jnp.sum(targets[None] * log_probs, axis=-1))
    return nll + odir(params, off_diagonal, bias)


def linear_map_step(
    name: str,
    *,
    diagonal: bool,
    on_log_probs: bool,
    split: str,
    level: str,
    off_diagonal: float,
    bias: float,
    max_iterations: int,
    tolerance: float,
) -> PosthocStep:
    """Vector, matrix and Dirichlet scaling: one linear map, of the logits or of the
    log probabilities (``on_log_probs``), fitted by penalized NLL."""
    check_level(name, level)
    if off_diagonal < 0 or bias < 0:
        raise UsageError(f"{name} needs off_diagonal >= 0 and bias >= 0")
    if max_iterations < 1 or tolerance <= 0:
        raise UsageError(f"{name} needs max_iterations >= 1 and tolerance > 0")
    collapses = on_log_probs and level == "ensemble"  # maps the predictive distribution

    def inputs_of(logits):
        if collapses:
            return predictive_log_probs(logits)[None]  # [M, N, K] -> [1, N, K]
        return jax.nn.log_softmax(logits, axis=-1) if on_log_probs else logits

    def fit(outputs: Outputs, targets: Targets):
        logits, _ = outputs
        k = logits.shape[-1]
        init = {
            "weight": jnp.ones(k) if diagonal else jnp.eye(k),
            "bias": jnp.zeros(k),
        }
        inputs = inputs_of(logits.astype(jnp.float32))
        distributions = target_distributions(targets, k)
        objective = jax.tree_util.Partial(
            linear_map_objective,
            inputs=inputs,
            targets=distributions,
            mixture=level == "ensemble" and not collapses,
            off_diagonal=off_diagonal,
            bias=bias,
        )
        return minimize_lbfgs(objective, init, max_iterations, tolerance)

    def apply(outputs: Outputs, params) -> Outputs:
        logits, extras = outputs
        return linear_map(params, inputs_of(logits)), extras

    return PosthocStep(fit=fit, apply=apply, split=split)


def vector_scaling(
    split: str = "validation",
    level: str = "ensemble",
    max_iterations: int = 500,
    tolerance: float = 1e-6,
) -> PosthocStep:
    """Args:
    split: the evaluation set the map is fitted on.
    level: ``"ensemble"`` or ``"member"`` (module docstring).
    max_iterations, tolerance: L-BFGS stops at this many steps or gradient norm.
    """
    return linear_map_step(
        "vector_scaling",
        diagonal=True,
        on_log_probs=False,
        split=split,
        level=level,
        off_diagonal=0.0,
        bias=0.0,
        max_iterations=max_iterations,
        tolerance=tolerance,
    )


def matrix_scaling(
    split: str = "validation",
    level: str = "ensemble",
    off_diagonal: float = 1e-2,
    bias: float = 1e-2,
    max_iterations: int = 500,
    tolerance: float = 1e-6,
) -> PosthocStep:
    """Args:
    split: the evaluation set the map is fitted on.
    level: ``"ensemble"`` or ``"member"`` (module docstring).
    off_diagonal, bias: the ODIR weights ``lambda`` and ``mu``.
    max_iterations, tolerance: L-BFGS stops at this many steps or gradient norm.
    """
    return linear_map_step(
        "matrix_scaling",
        diagonal=False,
        on_log_probs=False,
        split=split,
        level=level,
        off_diagonal=off_diagonal,
        bias=bias,
        max_iterations=max_iterations,
        tolerance=tolerance,
    )


def dirichlet_calibration(
    split: str = "validation",
    level: str = "ensemble",
    off_diagonal: float = 1e-2,
    bias: float = 1e-2,
    max_iterations: int = 500,
    tolerance: float = 1e-6,
) -> PosthocStep:
    """Args:
    split: the evaluation set the map is fitted on.
    level: ``"ensemble"`` or ``"member"`` (module docstring).
    off_diagonal, bias: the ODIR weights ``lambda`` and ``mu``.
    max_iterations, tolerance: L-BFGS stops at this many steps or gradient norm.
    """
    return linear_map_step(
        "dirichlet_calibration",
        diagonal=False,
        on_log_probs=True,
        split=split,
        level=level,
        off_diagonal=off_diagonal,
        bias=bias,
        max_iterations=max_iterations,
        tolerance=tolerance,
    )


# ------------------------------------------------------ one-vs-rest probability maps


def class_probabilities(logits: jax.Array, level: str) -> jax.Array:
    """``[M', N, K]`` probabilities the map reads: the predictive (``M' = 1``) or each
    member's."""
    if level == "ensemble":
        return jnp.exp(predictive_log_probs(logits))[None]
    return jax.nn.softmax(logits, axis=-1)


def normalized_log_probs(probs: jax.Array) -> jax.Array:
    """One-vs-rest probabilities ``[..., K]``, floored and renormalized, as logits."""
    probs = jnp.maximum(probs, PROBABILITY_FLOOR)
    return jnp.log(probs) - jnp.log(jnp.sum(probs, axis=-1, keepdims=True))


def pooled(probs: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``[M', N, K]`` probabilities and ``[N, K]`` targets -> ``[K, M' N]`` each: one row
    of scores and of 0/1 targets per class, the members pooled."""
    m, n, k = probs.shape
    scores = probs.reshape(m * n, k).T  # [M', N, K] -> [K, M' N]
    return scores, jnp.tile(labels.T, (1, m))


def bin_index(probs: jax.Array, num_bins: int) -> jax.Array:
    """Equal-width bin of each probability in ``[0, 1]``; 1.0 falls in the last bin."""
    return jnp.clip(jnp.floor(probs * num_bins).astype(jnp.int32), 0, num_bins - 1)


def histogram_binning(
    split: str = "validation", level: str = "ensemble", num_bins: int = 15
) -> PosthocStep:
    """Args:
    split: the evaluation set the bins are fitted on.
    level: ``"ensemble"`` or ``"member"`` (module docstring).
    num_bins: equal-width bins of each class probability.
    """
    check_level("histogram_binning", level)
    if num_bins < 1:
        raise UsageError(f"histogram_binning needs num_bins >= 1, got {num_bins}")

    def fit(outputs: Outputs, targets: Targets):
        logits, _ = outputs
        k = logits.shape[-1]
        scores, positives = pooled(
            class_probabilities(logits, level), jax.nn.one_hot(targets["label"], k)
        )
        bins = jax.nn.one_hot(bin_index(scores, num_bins), num_bins)  # [K, N', bins]
        counts = jnp.sum(bins, axis=1)  # [K, bins]: sufficient statistics
        hits = jnp.einsum("kn,knb->kb", positives, bins)
        centres = (jnp.arange(num_bins) + 0.5) / num_bins
        return {"bin_values": jnp.where(counts > 0, hits / jnp.maximum(counts, 1), centres)}

    def apply(outputs: Outputs, params) -> Outputs:
        logits, extras = outputs
        probs = class_probabilities(logits, level)  # [M', B, K]
        index = bin_index(probs, num_bins)
        mapped = jnp.take_along_axis(
            params["bin_values"].T, index.reshape(-1, index.shape[-1]), axis=0
        )
        return normalized_log_probs(mapped.reshape(probs.shape)), extras

    return PosthocStep(fit=fit, apply=apply, split=split)


def pooled_isotonic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Host side of ``pool_adjacent_violators``: ``[N]`` sorted scores and targets ->
    the fitted values, tied scores pooled into their weighted mean first."""
    unique, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y, minlength=len(unique)) / counts
    fitted = optimize.isotonic_regression(means, weights=counts.astype(np.float64)).x
    return fitted[inverse].astype(np.float32)


def pool_adjacent_violators(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Isotonic (non-decreasing) least-squares fit of ``y [N]`` on ``x [N]``: the sorted
    ``x`` and the fitted value at each, by scipy's pool-adjacent-violators (a sequential
    algorithm, so it runs on the host, O(N) after the sort)."""
    order = jnp.argsort(x)
    x, y = x[order], y[order].astype(jnp.float32)
    fitted = jax.pure_callback(
        lambda a, b: pooled_isotonic(np.asarray(a, np.float64), np.asarray(b, np.float64)),
        jax.ShapeDtypeStruct(y.shape, jnp.float32),
        x,
        y,
        vmap_method="sequential",
    )
    return x, fitted


def isotonic(split: str = "validation", level: str = "ensemble") -> PosthocStep:
    """Args:
    split: the evaluation set the maps are fitted on.
    level: ``"ensemble"`` or ``"member"`` (module docstring).
    """
    check_level("isotonic", level)

    def fit(outputs: Outputs, targets: Targets):
        logits, _ = outputs
        k = logits.shape[-1]
        scores, positives = pooled(
            class_probabilities(logits, level), jax.nn.one_hot(targets["label"], k)
        )
        x, y = jax.vmap(pool_adjacent_violators)(scores, positives)  # [K, N'] each
        return {"x": x, "y": y}

    def apply(outputs: Outputs, params) -> Outputs:
        logits, extras = outputs
        probs = class_probabilities(logits, level)  # [M', B, K]
        flat = probs.reshape(-1, probs.shape[-1]).T  # [M', B, K] -> [K, M' B]
        mapped = jax.vmap(jnp.interp)(flat, params["x"], params["y"])
        return normalized_log_probs(mapped.T.reshape(probs.shape)), extras

    return PosthocStep(fit=fit, apply=apply, split=split)


def platt_fit(scores: jax.Array, positives: jax.Array, iterations: int) -> jax.Array:
    """``[2]`` (a, b) maximizing the likelihood of ``sigma(a s + b)`` for 0/1 targets:
    Newton's method from (1, 0), with a small ridge keeping the Hessian invertible."""
    features = jnp.stack([scores, jnp.ones_like(scores)], axis=-1)  # [N, 2]

    def newton(_, ab):
        p = jax.nn.sigmoid(features @ ab)
        grad = features.T @ (p - positives)
        hessian = (features * (p * (1 - p))[:, None]).T @ features + 1e-8 * jnp.eye(2)
        return ab - jnp.linalg.solve(hessian, grad)

    return jax.lax.fori_loop(0, iterations, newton, jnp.array([1.0, 0.0]))


def platt(
    split: str = "validation", level: str = "ensemble", newton_iterations: int = 50
) -> PosthocStep:
    """Args:
    split: the evaluation set the maps are fitted on.
    level: ``"ensemble"`` or ``"member"`` (module docstring).
    newton_iterations: Newton steps of each logistic fit.
    """
    check_level("platt", level)

    def log_odds(logits: jax.Array, multilabel) -> jax.Array:
        """``[M', N, K]`` log-odds the maps read: of each label's sigmoid (multi-label)
        or of each class's probability."""
        if level == "ensemble":
            log_p, log_not_p = multilabel_log_probs(logits)
            sigmoids = (log_p - log_not_p)[None]
        else:
            sigmoids = logits
        p = jnp.clip(class_probabilities(logits, level), 1e-12, 1 - 1e-7)
        return jnp.where(multilabel, sigmoids, jnp.log(p) - jnp.log1p(-p))

    def fit(outputs: Outputs, targets: Targets):
        logits, _ = outputs
        multilabel = targets["label"].ndim == 2  # [N, K] 0/1 labels
        k = logits.shape[-1]
        if multilabel:
            labels = targets["label"].astype(jnp.float32)
        else:
            labels = jax.nn.one_hot(targets["label"], k)
        scores, positives = pooled(log_odds(logits, multilabel), labels)
        ab = jax.vmap(lambda s, t: platt_fit(s, t, newton_iterations))(scores, positives)
        return {"a": ab[:, 0], "b": ab[:, 1], "multilabel": jnp.asarray(multilabel)}

    def apply(outputs: Outputs, params) -> Outputs:
        logits, extras = outputs
        multilabel = params["multilabel"]
        z = params["a"] * log_odds(logits, multilabel) + params["b"]  # [M', B, K]
        if z.shape[-1] == 2:  # binary: class 1's map decides, p_0 = 1 - p_1
            classes = jnp.stack([-z[..., 1], z[..., 1]], axis=-1) / 2
        else:
            classes = normalized_log_probs(jax.nn.sigmoid(z))
        return jnp.where(multilabel, z, classes), extras

    return PosthocStep(fit=fit, apply=apply, split=split, tasks=("classification", "multilabel"))

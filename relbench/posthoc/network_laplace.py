"""Full-network and subnetwork Laplace [1, 2]: the ``laplace`` step with ``subset`` =
``"all"`` or parameter path prefixes (``relbench.posthoc.laplace`` has the last layer).

Over the chosen parameters ``theta`` (the others stay at their MAP values),

    q(theta) = N(theta*, (H + delta I)^-1),

with ``H`` the GGN (``relbench.posthoc.network_curvature``) as

* ``kfac``: per dense/conv layer ``A (x) G``; ``H + delta I`` has the eigenvalues
  ``a_i g_j + delta`` in the eigenbasis ``U_A (x) U_G`` (Immer et al. [3], laplace-torch), so

      log det(H + delta I) = sum_layers sum_ij log(a_i g_j + delta),

  and a draw is ``W* + U_A (Z / sqrt(a g^T + delta)) U_G^T``, ``Z ~ N(0, I)`` per layer;
  parameters outside the dense/conv layers of the subset (normalization scales) stay
  at their MAP values;
* ``diag``: the exact GGN diagonal ``h``: ``log det = sum log(h + delta)``, draws
  ``theta* + z / sqrt(h + delta)``.

The evidence ``log p(D | delta)`` is that of ``relbench.posthoc.laplace`` (the same
function) over these spectra, with the log-likelihood and ``||theta*||^2`` of the chosen
parameters, tuned by ``"marglik"`` (Adam) or ``"marglik_grid"``; the factors, the
diagonal and the log-likelihood are sums over the fit split, accumulated batch by batch
(``accumulate``, jitted by the loop on each global, sharded batch).

**Predictive** over ``num_samples`` draws, each a member (logits ``[S, B, K]``):

* ``mc``: the network run with each draw;
* ``glm``: the linearized network [2, 4] ``f(x; theta*) + J(x) (theta - theta*)``, one
  Jacobian-vector product per draw (``jax.linearize``); the network's own predictive
  under the GGN posterior, which the ``mc`` predictive of a full-network Laplace
  underfits [4].

References:
  [1] MacKay. A Practical Bayesian Framework for Backpropagation Networks. Neural
      Computation 1992. https://doi.org/10.1162/neco.1992.4.3.448
  [2] Daxberger, Kristiadi, Immer, Eschenhagen, Bauer, Hennig. Laplace Redux -
      Effortless Bayesian Deep Learning. NeurIPS 2021. https://arxiv.org/abs/2106.14806
  [3] Immer, Bauer, Fortuin, Ratsch, Khan. Scalable Marginal Likelihood Estimation for
      Model Selection in Deep Learning. ICML 2021. https://arxiv.org/abs/2104.04975
  [4] Immer, Korzepa, Bauer. Improving predictions of Bayesian neural nets via local
      linearization. AISTATS 2021. https://arxiv.org/abs/2008.08400
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

from relbench.errors import UsageError
from relbench.posthoc import network_curvature as curvature_lib
from relbench.posthoc.network_curvature import Forward
from relbench.posthoc.temperature_scaling import target_distributions

STRUCTURES = ("kfac", "diag")
LINKS = ("mc", "glm")


def weights_of(batch) -> jax.Array:
    """``[B]``: 1 for a real example, 0 for padding."""
    if "mask" in batch:
        return batch["mask"].astype(jnp.float32)
    return jnp.ones(batch["input"].shape[:1], jnp.float32)


def layer_matrix(flat: dict, layer) -> jax.Array:
    """A layer's ``W [D_in (+1), D_out]``: its kernel flattened row-major, then its bias."""
    kernel = flat[f"{layer.path}/kernel"]
    w = kernel.reshape(-1, kernel.shape[-1])
    return jnp.concatenate([w, flat[f"{layer.path}/bias"][None]]) if layer.use_bias else w


def with_layer_matrices(flat: dict, layers: dict, matrices: dict) -> dict:
    """``flat`` with each layer's kernel (and bias) taken from its ``W``."""
    out = dict(flat)
    for path, (layer, _) in layers.items():
        kernel, w = flat[f"{path}/kernel"], matrices[path]
        out[f"{path}/kernel"] = w[: kernel.size // kernel.shape[-1]].reshape(kernel.shape)
        if layer.use_bias:
            out[f"{path}/bias"] = w[-1]
    return out


def nest(flat: dict[str, Any]) -> dict:
    """``{"DenseHead_0/Dense_0": entry}`` -> nested dicts (the checkpointable form)."""
    return traverse_util.unflatten_dict(flat, sep="/")


def layer_entries(nested: dict) -> dict[str, dict]:
    """The inverse of ``nest`` for per-layer entries (dicts with ``"a"`` or ``"a_values"``)."""
    return traverse_util.flatten_dict(
        nested, is_leaf=lambda _, v: "a" in v or "a_values" in v, sep="/"
    )


class NetworkLaplace:
    """The pure functions of a network-subset Laplace (the loop jits each): ``init``,
    ``accumulate`` per batch, ``finish`` (eigendecompositions and the prior precision),
    and ``apply``. ``forward(params, inputs) -> logits [1, B, K]``; ``tune(spectrum,
    size, squared_norm, log_lik) -> log delta``."""

    def __init__(self, subset, structure: str, link: str, num_samples: int, key, tune):
        self.subset, self.structure, self.link = subset, structure, link
        self.num_samples, self.key, self.tune = num_samples, key, tune

    def _layers(self, forward: Forward, params, inputs) -> dict:
        paths = curvature_lib.select(params, self.subset)
        layers = curvature_lib.kfac_layers(forward, params, paths, inputs)
        if not layers:
            raise UsageError(
                f"laplace kfac: subset '{self.subset}' holds no flax.linen.Dense or Conv "
                "layer; name one, or use structure 'diag'"
            )
        return layers

    def _batch_sums(self, params, forward: Forward, batch) -> dict[str, Any]:
        x, weights = batch["input"], weights_of(batch)
        members, _, num_classes = jax.eval_shape(forward, params, x).shape  # [1, B, K]
        if members != 1:
            raise UsageError(
                f"laplace with a network subset needs a single-member model, this one has "
                f"{members} members; use subset 'last_layer' (one fit per member)"
            )
        distributions = target_distributions(batch, num_classes)
        if self.structure == "kfac":
            layers = self._layers(forward, params, x)
            pairs, log_lik = curvature_lib.kfac_sums(
                forward, params, layers, x, distributions, weights
            )
            sums = nest({p: {"a": a, "g": g} for p, (a, g) in pairs.items()})
        else:
            paths = curvature_lib.select(params, self.subset)
            sums = nest(curvature_lib.diag_ggn(forward, params, paths, x, weights))
            log_lik = curvature_lib.log_likelihood(forward(params, x)[0], distributions, weights)
        return {"sums": sums, "count": jnp.sum(weights), "log_lik": log_lik}

    def init(self, params, forward: Forward, batch) -> dict[str, Any]:
        """Zero statistics, shaped as one batch's."""
        shapes = jax.eval_shape(lambda p, b: self._batch_sums(p, forward, b), params, batch)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def accumulate(self, statistics, params, forward: Forward, batch) -> dict[str, Any]:
        """``statistics`` plus one batch's sums."""
        return jax.tree.map(jnp.add, statistics, self._batch_sums(params, forward, batch))

    def finish(self, statistics, params) -> dict[str, Any]:
        """The eigendecomposed curvature and the tuned ``log delta``."""
        flat = curvature_lib.flatten(params)
        if self.structure == "kfac":
            curvature, spectra, chosen = {}, [], []
            for path, sums in layer_entries(statistics["sums"]).items():
                a_values, a_vectors = jnp.linalg.eigh(sums["a"])
                g_values, g_vectors = jnp.linalg.eigh(sums["g"] / statistics["count"])
                curvature[path] = {
                    "a_values": jnp.maximum(a_values, 0.0),
                    "a_vectors": a_vectors,
                    "g_values": jnp.maximum(g_values, 0.0),
                    "g_vectors": g_vectors,
                }
                spectra.append(jnp.outer(curvature[path]["a_values"], curvature[path]["g_values"]))
                kernel = flat[f"{path}/kernel"]
                has_bias = sums["a"].shape[0] > kernel.size // kernel.shape[-1]
                chosen += [kernel] + ([flat[f"{path}/bias"]] if has_bias else [])
            fitted = nest(curvature)
        else:
            diag = curvature_lib.flatten(statistics["sums"])
            spectra, chosen, fitted = (
                list(diag.values()),
                [flat[p] for p in diag],
                statistics["sums"],
            )
        spectrum = jnp.concatenate([v.reshape(-1) for v in spectra])
        size = sum(v.size for v in chosen)
        squared_norm = sum(jnp.sum(jnp.square(v)) for v in chosen)
        log_delta = self.tune(spectrum, size, squared_norm, statistics["log_lik"])
        return {"curvature": fitted, "log_prior_precision": log_delta}

    def sample(self, params, fitted, forward: Forward, inputs, key):
        """One draw of the whole parameter tree (the others at their MAP values)."""
        flat = curvature_lib.flatten(params)
        delta = jnp.exp(fitted["log_prior_precision"])
        if self.structure == "diag":
            diag = curvature_lib.flatten(fitted["curvature"])
            keys = jax.random.split(key, len(diag))
            draws = {
                p: flat[p] + jax.random.normal(k, h.shape) / jnp.sqrt(h + delta)
                for (p, h), k in zip(diag.items(), keys, strict=True)
            }
            return curvature_lib.unflatten({**flat, **draws})
        layers = self._layers(forward, params, inputs)
        factors = layer_entries(fitted["curvature"])
        keys = jax.random.split(key, len(layers))
        matrices = {}
        for (path, (layer, _)), k in zip(layers.items(), keys, strict=True):
            c, w = factors[path], layer_matrix(flat, layer)
            scales = 1.0 / jnp.sqrt(jnp.outer(c["a_values"], c["g_values"]) + delta)
            z = jax.random.normal(k, w.shape)
            matrices[path] = w + c["a_vectors"] @ (z * scales) @ c["g_vectors"].T
        return curvature_lib.unflatten(with_layer_matrices(flat, layers, matrices))

    def apply(self, outputs, fitted, params, forward: Forward, inputs):
        """``[S, B, K]`` logits of the draws (``mc``) or of the linearized network at the
        draws (``glm``); the extras repeated for each."""
        _, extras = outputs
        keys = jax.random.split(self.key, self.num_samples)
        if self.link == "mc":
            logits = jax.lax.map(
                lambda k: forward(self.sample(params, fitted, forward, inputs, k), inputs)[0], keys
            )
        else:
            mean, linear = jax.linearize(lambda p: forward(p, inputs)[0], params)

            def one(k):
                draw = self.sample(params, fitted, forward, inputs, k)
                return mean + linear(jax.tree.map(jnp.subtract, draw, params))

            logits = jax.lax.map(one, keys)
        extras = {k: jnp.repeat(v, self.num_samples, axis=0) for k, v in extras.items()}
        return logits, extras  # [S, B, K]

"""Full-batch NUTS over a log density, through blackjax: the reference posterior.

``nuts(log_density, init, key)`` runs ``num_chains`` independent chains of the No-U-Turn
sampler [1] (blackjax's kernel, step size and diagonal mass matrix tuned by Stan's
window adaptation [2] over ``num_warmup`` steps), each started at ``init`` plus a small
jitter, and returns the samples ``[C, S, ...]`` per leaf with the diagnostics that say
whether they can be trusted: the split-chain potential scale reduction R-hat (close to
1 when the chains agree) and the effective sample size over all chains [3], per
parameter, reduced to their worst values.

References:
  [1] Hoffman, Gelman. The No-U-Turn Sampler. JMLR 2014. https://arxiv.org/abs/1111.4246
  [2] Carpenter et al. Stan: A Probabilistic Programming Language. J. Stat. Softw. 2017.
  [3] Vehtari, Gelman, Simpson, Carpenter, Buerkner. Rank-normalization, folding, and
      localization: an improved R-hat. Bayesian Analysis 2021.
      https://arxiv.org/abs/1903.08008
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp


class Posterior(NamedTuple):
    samples: Any  # [C, S, ...] per leaf
    max_rhat: jax.Array  # the worst R-hat over every parameter
    min_ess: jax.Array  # the smallest effective sample size over every parameter
    acceptance_rate: jax.Array  # mean over chains and steps


def nuts(
    log_density: Callable[[Any], jax.Array],
    init: Any,
    key: jax.Array,
    *,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    jitter: float = 0.1,
) -> Posterior:
    """NUTS samples of ``exp(log_density)`` with their R-hat and ESS (module docstring)."""

    def chain(chain_key):
        start_key, warmup_key, sample_key = jax.random.split(chain_key, 3)
        leaves, treedef = jax.tree.flatten(init)
        keys = jax.random.split(start_key, len(leaves))
        start = jax.tree.unflatten(
            treedef,
            [
                x + jitter * jax.random.normal(k, jnp.shape(x))
                for x, k in zip(leaves, keys, strict=True)
            ],
        )
        warmup = blackjax.window_adaptation(blackjax.nuts, log_density)
        (state, parameters), _ = warmup.run(warmup_key, start, num_steps=num_warmup)
        kernel = blackjax.nuts(log_density, **parameters).step

        def step(state, step_key):
            state, info = kernel(step_key, state)
            return state, (state.position, info.acceptance_rate)

        _, (positions, acceptance) = jax.lax.scan(
            step, state, jax.random.split(sample_key, num_samples)
        )
        return positions, acceptance

    # The chains run one after another through one compiled program (a vmap of NUTS's
    # data-dependent while loops runs every chain for as long as the slowest one).
    run = jax.jit(chain)
    outputs = [run(k) for k in jax.random.split(key, num_chains)]
    samples, acceptance = jax.tree.map(lambda *a: jnp.stack(a), *outputs)
    flat = jnp.concatenate(
        [s.reshape(num_chains, num_samples, -1) for s in jax.tree.leaves(samples)], -1
    )  # [C, S, P]
    rhat = blackjax.diagnostics.potential_scale_reduction(flat, chain_axis=0, sample_axis=1)
    ess = blackjax.diagnostics.effective_sample_size(flat, chain_axis=0, sample_axis=1)
    return Posterior(samples, jnp.max(rhat), jnp.min(ess), jnp.mean(acceptance))

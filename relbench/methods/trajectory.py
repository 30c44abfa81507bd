"""Trajectory posteriors: weight snapshots collected by the optimizer wrapper, on a
cyclical schedule, as the members of a method.

Training of ``T`` steps ends with ``C`` cycles of length ``L = floor((1 - b) T / C)``; the
``T - C L`` steps before them (a ``burn_in`` fraction ``b``, and the leftover) run at the
full step size, so that no member is a snapshot of a barely trained network. Within a
cycle, at position ``t in [0, L)``, the step size follows the cosine [1, 2]

    eta_t = eta_0 / 2 * (cos(pi t / L) + 1),

large at the start (the iterate leaves the previous mode) and near 0 at the end (it
settles). In the last steps of each cycle ``K`` snapshots are collected,
``gap = max(floor(L * (1 - exploration) / K), 1)`` steps apart, the last at the cycle's
end: ``S = C K`` members in the wrapper's state ``[S, ...]``. The methods differ in the
step taken (``step(grads, inner, params, count, factor, sampling)``):

* ``snapshot_ensemble`` [1]: the run's optimizer with its updates scaled by
  ``eta_t / eta_0`` (the cyclic learning rate), one snapshot per cycle;
* ``csgld`` [2]: Langevin dynamics (blackjax's overdamped Langevin solver);
* ``sghmc`` [2, 3]: stochastic-gradient HMC (blackjax's SGHMC solver).

For SG-MCMC the burn-in is the run's own optimizer, the first ``exploration`` fraction
of each cycle is optimization by the sampler without noise, and the rest sampling. The
noise key is ``fold_in(key(seed), step)``: nothing random is kept in the state, so a
resumed run draws the same numbers.

References:
  [1] Huang, Li, Pleiss, Liu, Hopcroft, Weinberger. Snapshot Ensembles: Train 1, get M
      for free. ICLR 2017. https://arxiv.org/abs/1704.00109
  [2] Zhang, Li, Zhang, Chen, Wilson. Cyclical Stochastic Gradient MCMC for Bayesian
      Deep Learning. ICLR 2020. https://arxiv.org/abs/1902.03932
  [3] Chen, Fox, Guestrin. Stochastic Gradient Hamiltonian Monte Carlo. ICML 2014.
      https://arxiv.org/abs/1402.4102
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from relbench.errors import UsageError
from relbench.methods.likelihoods import Likelihood
from relbench.methods.method import Method, dense_head, likelihood_loss
from relbench.methods.precise_bn import BATCH_STATS
from relbench.methods.weight_samples import (
    sample_predict,
    sample_statistics,
    zero_sample_statistics,
)

Step = Callable[..., tuple[Any, Any]]


class SnapshotState(NamedTuple):
    inner: Any  # the step's own state (the run's optimizer's, or a momentum)
    count: jax.Array  # steps taken
    snapshots: Any  # [S, ...] per leaf


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The cyclical schedule of a run of ``total_steps`` (module docstring)."""

    total_steps: int
    num_cycles: int
    per_cycle: int
    exploration: float
    burn_in: float = 0.0

    @property
    def length(self) -> int:
        return max(math.floor((1.0 - self.burn_in) * self.total_steps) // self.num_cycles, 1)

    @property
    def gap(self) -> int:
        return max(math.floor(self.length * (1.0 - self.exploration) / self.per_cycle), 1)

    def position(self, count: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(cycle, t)`` of the step that makes the ``count``-th iterate (cycle < 0:
        the burn-in steps before the first cycle)."""
        offset = self.total_steps - self.num_cycles * self.length
        index = count - 1 - offset
        return jnp.floor_divide(index, self.length), jnp.mod(index, self.length)

    def factor(self, count: jax.Array) -> jax.Array:
        """``eta_t / eta_0`` of the step that makes the ``count``-th iterate."""
        cycle, t = self.position(count)
        cosine = 0.5 * (jnp.cos(jnp.pi * t / self.length) + 1.0)
        return jnp.where(cycle < 0, 1.0, cosine)

    def sampling(self, count: jax.Array) -> jax.Array:
        """Whether that step is in a cycle's sampling (not exploration) phase."""
        cycle, t = self.position(count)
        return (cycle >= 0) & (t >= self.exploration * self.length)

    def slot(self, count: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(collect, slot)``: whether the ``count``-th iterate is a snapshot, and where."""
        cycle, t = self.position(count)
        from_end = self.length - 1 - t  # 0 at the cycle's last step
        collect = (
            (cycle >= 0) & (from_end % self.gap == 0) & (from_end // self.gap < self.per_cycle)
        )
        slot = cycle * self.per_cycle + (self.per_cycle - 1 - from_end // self.gap)
        return collect, jnp.clip(slot, 0, self.num_cycles * self.per_cycle - 1)


def collect_snapshots(
    step: Step, init_inner: Callable[[Any], Any], schedule: Schedule
) -> optax.GradientTransformation:
    """An optax transformation taking ``step``'s updates and keeping the snapshots."""
    size = schedule.num_cycles * schedule.per_cycle

    def init(params):
        snapshots = jax.tree.map(lambda p: jnp.zeros((size, *p.shape), p.dtype), params)
        return SnapshotState(init_inner(params), jnp.zeros((), jnp.int32), snapshots)

    def update(grads, state, params=None):
        count = state.count + 1
        factor, sampling = schedule.factor(count), schedule.sampling(count)
        updates, inner = step(grads, state.inner, params, count, factor, sampling)
        iterate = optax.apply_updates(params, updates)
        collect, slot = schedule.slot(count)

        def record(snapshots, theta):
            return snapshots.at[slot].set(jnp.where(collect, theta, snapshots[slot]))

        snapshots = jax.tree.map(record, state.snapshots, iterate)
        return updates, SnapshotState(inner, count, snapshots)

    return optax.GradientTransformation(init, update)


def check_schedule(
    name: str, num_cycles: int, per_cycle: int, exploration: float, burn_in: float
) -> None:
    if num_cycles < 1 or per_cycle < 1:
        raise UsageError(f"{name} needs num_cycles >= 1 and samples_per_cycle >= 1")
    if not (0.0 <= exploration < 1.0 and 0.0 <= burn_in < 1.0):
        raise UsageError(
            f"{name} needs 0 <= exploration < 1 and 0 <= burn_in < 1, got {exploration}, {burn_in}"
        )


def snapshot_method(
    likelihood: Likelihood,
    label_smoothing: float,
    optimizer: Callable[[optax.GradientTransformation, int], optax.GradientTransformation],
    num_members: int,
) -> Method:
    """The method whose members are the snapshots its ``optimizer`` wrapper keeps:
    maximum-likelihood training, per-snapshot batch-norm statistics after training,
    and the snapshots stacked on the member axis at test time."""
    likelihood = likelihood.smoothed(label_smoothing)
    loss_fn = likelihood_loss(likelihood, ("batch_stats",))
    streams = ("dropout",)

    def draw(state, index):
        return jax.tree.map(lambda s: s[index], state.opt_state.snapshots)

    statistics = sample_statistics(loss_fn, streams, draw, num_members)

    def after_training(apply_fn, state, data, key):
        return state.replace(fitted={BATCH_STATS: statistics(apply_fn, state, data, key)})

    def layers(base):
        return dataclasses.replace(base, head=dense_head(likelihood, base.dense))

    return Method(
        layers=layers,
        loss_fn=loss_fn,
        predict_fn=sample_predict(draw, num_members),
        optimizer=optimizer,
        after_training=after_training,
        init_fitted=lambda variables: {BATCH_STATS: zero_sample_statistics(variables, num_members)},
        rng_streams=streams,
    )


def log_density_gradient(grads: Any, params: Any, weight_decay: float) -> Any:
    """``-grad(mean loss + weight_decay / 2 ||theta||^2)``: the drift of SG-MCMC, the
    gradient of the per-example log posterior (a Gaussian prior of precision
    ``weight_decay`` per example)."""
    return jax.tree.map(lambda g, p: -(g + weight_decay * p), grads, params)


def noise_key(seed: int, count: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), count)


def sgmcmc_method(
    likelihood: Likelihood,
    label_smoothing: float,
    schedule_args: tuple[int, int, float, float],
    move: Callable[..., tuple[Any, Any]],
    init_inner: Callable[[Any], Any],
    step_size: float,
    temperature: float,
    weight_decay: float,
    seed: int,
) -> Method:
    """A cyclical SG-MCMC method: ``move(key, params, inner, drift, eta, tau) ->
    (params, inner)`` is one step of the sampler's solver. The burn-in steps before the
    first cycle are the run's optimizer (optimization to a mode, at the run's own
    settings); the cycles are the sampler."""
    num_cycles, per_cycle, exploration, burn_in = schedule_args

    def optimizer(tx, total_steps):
        schedule = Schedule(total_steps, num_cycles, per_cycle, exploration, burn_in)

        def step(grads, inner, params, count, factor, sampling):
            tx_state, sampler_state = inner
            drift = log_density_gradient(grads, params, weight_decay)
            tau = jnp.where(sampling, temperature, 0.0)
            key = noise_key(seed, count)
            moved, new_sampler = move(key, params, sampler_state, drift, step_size * factor, tau)
            sampled = jax.tree.map(lambda new, old: new - old, moved, params)
            optimized, new_tx = tx.update(grads, tx_state, params)
            burning = schedule.position(count)[0] < 0
            choose = functools.partial(jax.tree.map, lambda a, b: jnp.where(burning, a, b))
            return choose(optimized, sampled), (choose(new_tx, tx_state), new_sampler)

        return collect_snapshots(
            step, lambda params: (tx.init(params), init_inner(params)), schedule
        )

    return snapshot_method(likelihood, label_smoothing, optimizer, num_cycles * per_cycle)

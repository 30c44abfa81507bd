"""Snapshot ensembles [1]: the run's optimizer under a cyclic cosine learning rate, one
snapshot at the end of each cycle, the snapshots as members.

The wrapper (``relbench.methods.trajectory``) scales the run's updates by
``(cos(pi t / L) + 1) / 2`` within each of ``num_cycles`` cycles of ``L`` steps, which
for SGD or Adam is the cyclic learning rate ``eta_t``; snapshots are taken at the last
``samples_per_cycle`` steps of each cycle (1: at its end, as in [1]).

References:
  [1] Huang, Li, Pleiss, Liu, Hopcroft, Weinberger. Snapshot Ensembles: Train 1, get M
      for free. ICLR 2017. https://arxiv.org/abs/1704.00109
"""

from __future__ import annotations

import jax

from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.method import Method
from relbench.methods.trajectory import Schedule, check_schedule, collect_snapshots, snapshot_method


def make(
    likelihood: Likelihood = CATEGORICAL,
    num_cycles: int = 3,
    samples_per_cycle: int = 1,
    burn_in: float = 0.25,
    label_smoothing: float = 0.0,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    num_cycles: C, the learning-rate cycles (restarts).
    samples_per_cycle: snapshots at the end of each cycle, one step apart.
    burn_in: the fraction of training before the first cycle (at the full learning rate).
    label_smoothing: mass moved from the label to the uniform distribution.
    """
    check_schedule("snapshot_ensemble", num_cycles, samples_per_cycle, 0.0, burn_in)

    def optimizer(tx, total_steps):
        schedule = Schedule(total_steps, num_cycles, samples_per_cycle, 0.0, burn_in)

        def step(grads, inner, params, count, factor, sampling):
            del count, sampling  # the cyclic learning rate is the whole change
            updates, inner = tx.update(grads, inner, params)
            return jax.tree.map(lambda u: factor * u, updates), inner

        return collect_snapshots(step, tx.init, schedule)

    return snapshot_method(likelihood, label_smoothing, optimizer, num_cycles * samples_per_cycle)

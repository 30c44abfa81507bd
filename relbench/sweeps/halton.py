"""Quasi-random hyperparameter search over scrambled Halton sequences.

A search space is a list of axes (``uniform``, ``loguniform``, ``discrete``); ``search``
maps the first ``num_trials`` points of a ``len(axes)``-dimensional Halton sequence in
``[0, 1)^D`` onto them. Quasi-random points fill the space more evenly than
independent uniform draws (lower discrepancy), so a small budget of trials misses
fewer regions (Bousquet et al., 2017).

The math. Write the trial index ``i >= 1`` in base ``b``: ``i = sum_k d_k b^k``. The
radical inverse is ``phi_b(i) = sum_k d_k b^(-k-1)``; Halton's point ``i`` takes
``phi_{p_j}(i)`` in dimension ``j`` for the j-th prime ``p_j``. Plain Halton points in
neighbouring prime bases are strongly correlated for small ``i``; scrambling breaks
this: every digit passes through a random permutation ``pi_j`` of ``{0..b-1}`` with
``pi_j(0) = 0`` (so the sum stays finite; Braaten & Weller, 1979), and each dimension
is shifted by a random ``u_j`` modulo 1 (Cranley & Patterson, 1976). Finally the
order of the points is shuffled, as in Uncertainty Baselines' ``halton.py``, so that
any trial index is equally likely to hold any point. All randomness comes from
``seed``: the same seed gives the same trials.

References:
  1. J. H. Halton. On the efficiency of certain quasi-random sequences of points in
     evaluating multi-dimensional integrals. Numerische Mathematik 2, 1960.
     https://doi.org/10.1007/BF01386213
  2. E. Braaten, G. Weller. An improved low-discrepancy sequence for multidimensional
     quasi-Monte Carlo integration. J. Computational Physics 33, 1979.
     https://doi.org/10.1016/0021-9991(79)90019-6
  3. R. Cranley, T. N. L. Patterson. Randomization of number theoretic methods for
     multiple integration. SIAM J. Numerical Analysis 13, 1976.
     https://doi.org/10.1137/0713071
  4. O. Bousquet, S. Gelly, K. Kurach, O. Teytaud, D. Vincent. Critical
     hyper-parameters: no random, no cry. 2017. https://arxiv.org/abs/1706.03200
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from relbench.errors import UsageError


def primes(count: int) -> list[int]:
    """The first ``count`` primes."""
    found: list[int] = []
    candidate = 2
    while len(found) < count:
        if all(candidate % p for p in found if p * p <= candidate):
            found.append(candidate)
        candidate += 1
    return found


def radical_inverse(indices: np.ndarray, base: int, digit_map: np.ndarray) -> np.ndarray:
    """``sum_k digit_map[d_k] * base^(-k-1)`` for each index ``sum_k d_k base^k``."""
    indices = np.asarray(indices, dtype=np.int64).copy()
    out = np.zeros(indices.shape, dtype=np.float64)
    scale = 1.0 / base
    while np.any(indices > 0):
        indices, digits = np.divmod(indices, base)
        out += digit_map[digits] * scale
        scale /= base
    return out


def sequence(num_points: int, num_dims: int, seed: int) -> np.ndarray:
    """``num_points`` scrambled, shifted, shuffled Halton points in ``[0, 1)^num_dims``.

    Returns:
      An array ``[num_points, num_dims]``; the same for the same arguments.
    """
    rng = np.random.default_rng(seed)
    indices = np.arange(1, num_points + 1)
    columns = []
    for base in primes(num_dims):
        digit_map = np.concatenate([[0], 1 + rng.permutation(base - 1)])
        shift = rng.random()
        columns.append(np.mod(radical_inverse(indices, base, digit_map) + shift, 1.0))
    points = np.stack(columns, axis=1) if columns else np.zeros((num_points, 0))
    return points[rng.permutation(num_points)]


@dataclasses.dataclass(frozen=True)
class Uniform:
    """A float axis, uniform on ``[low, high)``."""

    name: str
    low: float
    high: float

    def value(self, u: float) -> float:
        return float(self.low + u * (self.high - self.low))


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """A positive float axis, uniform in ``log`` on ``[low, high)`` (learning rates...)."""

    name: str
    low: float
    high: float

    def __post_init__(self):
        if not 0 < self.low < self.high:
            raise UsageError(
                f"loguniform axis '{self.name}' needs 0 < low < high, got {self.low}, {self.high}"
            )

    def value(self, u: float) -> float:
        return float(math.exp(math.log(self.low) + u * math.log(self.high / self.low)))


@dataclasses.dataclass(frozen=True)
class Discrete:
    """One of a few values, each with equal probability."""

    name: str
    values: tuple

    def __post_init__(self):
        if not self.values:
            raise UsageError(f"discrete axis '{self.name}' has no values")

    def value(self, u: float) -> Any:
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]


Axis = Uniform | LogUniform | Discrete


def uniform(name: str, low: float, high: float) -> Uniform:
    return Uniform(name, low, high)


def loguniform(name: str, low: float, high: float) -> LogUniform:
    return LogUniform(name, low, high)


def discrete(name: str, values: Sequence[Any]) -> Discrete:
    return Discrete(name, tuple(values))


def search(axes: Sequence[Axis], num_trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """``num_trials`` override dicts ``{axis name: value}`` from a Halton sequence.

    Example (in a config file)::

        def sweep():
            return halton.search(
                [halton.loguniform("optimizer.learning_rate", 1e-3, 1.0),
                 halton.uniform("optimizer.momentum", 0.8, 0.99),
                 halton.discrete("model.hidden_sizes", [(128,), (256, 256)])],
                num_trials=16,
            )
    """
    names = [axis.name for axis in axes]
    if len(set(names)) != len(names):
        raise UsageError(f"search axes repeat a name: {names}; give each axis its own key")
    points = sequence(num_trials, len(axes), seed)
    return [{axis.name: axis.value(u) for axis, u in zip(axes, row, strict=True)} for row in points]


def grid(name: str, values: Sequence[Any]) -> list[dict[str, Any]]:
    """One override dict per value: ``grid("seed", range(3))``."""
    return [{name: value} for value in values]


def product(*sweeps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every combination of the given sweeps, e.g. ``product(grid("seed", range(3)),
    search(...))`` repeats each searched point for 3 seeds."""
    return [
        {k: v for overrides in combination for k, v in overrides.items()}
        for combination in itertools.product(*sweeps)
    ]

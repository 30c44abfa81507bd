"""The Halton search: closed forms, reproducibility, and coverage better than random."""

import math

import numpy as np
import pytest
from scipy.stats import qmc

from relbench.errors import UsageError
from relbench.sweeps import halton


def test_primes():
    assert halton.primes(10) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


def test_radical_inverse_matches_scipy_unscrambled_halton():
    # With the identity digit map, point i is the classic Halton point i; scipy's
    # unscrambled sequence starts at i = 0.
    n, dims = 50, 4
    ours = np.stack(
        [
            halton.radical_inverse(np.arange(1, n + 1), base, np.arange(base))
            for base in halton.primes(dims)
        ],
        axis=1,
    )
    reference = qmc.Halton(d=dims, scramble=False).random(n + 1)[1:]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


def test_radical_inverse_by_hand():
    # 6 = 110 in base 2 -> 0.011 = 3/8; with digits 0<->0, 1->1: unchanged.
    assert halton.radical_inverse(np.array([6]), 2, np.array([0, 1]))[0] == 3 / 8
    # 5 = 12 in base 3 -> digits (2, 1) -> 2/3 + 1/9; with map 1->2, 2->1: 1/3 + 2/9.
    got = halton.radical_inverse(np.array([5]), 3, np.array([0, 2, 1]))[0]
    assert math.isclose(got, 1 / 3 + 2 / 9)


def test_sequence_is_reproducible_per_seed():
    a = halton.sequence(32, 3, seed=7)
    np.testing.assert_array_equal(a, halton.sequence(32, 3, seed=7))
    assert not np.array_equal(a, halton.sequence(32, 3, seed=8))
    assert a.shape == (32, 3) and np.all((a >= 0) & (a < 1))


@pytest.mark.parametrize("dims", [2, 3, 5])
def test_covers_the_space_better_than_uniform_random(dims):
    # The check: centered L2 discrepancy (scipy.stats.qmc.discrepancy) of 64 points.
    # The worst of 5 Halton seeds beats the best of 50 independent uniform draws.
    worst_halton = max(qmc.discrepancy(halton.sequence(64, dims, seed=s)) for s in range(5))
    best_random = min(
        qmc.discrepancy(np.random.default_rng(s).random((64, dims))) for s in range(50)
    )
    assert worst_halton < best_random


def test_axes_map_the_unit_interval():
    assert halton.uniform("a", 2.0, 4.0).value(0.25) == 2.5
    log_axis = halton.loguniform("lr", 1e-4, 1e-0)
    assert math.isclose(log_axis.value(0.5), 1e-2)
    assert math.isclose(log_axis.value(0.0), 1e-4)
    pick = halton.discrete("width", [16, 32, 64])
    assert [pick.value(u) for u in (0.0, 0.34, 0.67, 0.9999)] == [16, 32, 64, 64]


def test_search_product_and_grid():
    axes = [
        halton.loguniform("optimizer.learning_rate", 1e-3, 1.0),
        halton.discrete("model.hidden_sizes", [(16,), (32, 32)]),
    ]
    trials = halton.search(axes, 8, seed=1)
    assert trials == halton.search(axes, 8, seed=1)
    assert len(trials) == 8
    for trial in trials:
        assert set(trial) == {"optimizer.learning_rate", "model.hidden_sizes"}
        assert 1e-3 <= trial["optimizer.learning_rate"] < 1.0
        assert trial["model.hidden_sizes"] in [(16,), (32, 32)]
    swept = halton.product(halton.grid("seed", [0, 1, 2]), trials)
    assert len(swept) == 24
    assert swept[1] == {"seed": 0, **trials[1]}
    assert swept[8] == {"seed": 1, **trials[0]}


def test_bad_axes_are_usage_errors():
    with pytest.raises(UsageError, match="0 < low < high"):
        halton.loguniform("lr", 0.0, 1.0)
    with pytest.raises(UsageError, match="no values"):
        halton.discrete("x", [])
    with pytest.raises(UsageError, match="repeat a name"):
        halton.search([halton.uniform("a", 0, 1), halton.uniform("a", 0, 2)], 4)

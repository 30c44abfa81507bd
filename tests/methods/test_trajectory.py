"""Trajectory posteriors: the cyclical schedule, cSGLD's samples against the exact
posterior, snapshot ensembles' snapshots, MultiSWAG's per-member draws."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from relbench import methods
from relbench.methods import multiswag, swag
from relbench.methods.trajectory import Schedule

N, NOISE, PRIOR = 50, 0.5, 1.0


def test_schedule_collects_at_the_end_of_every_cycle():
    schedule = Schedule(total_steps=11, num_cycles=2, per_cycle=2, exploration=0.5)
    collected = {}
    for count in range(1, 12):
        collect, slot = schedule.slot(jnp.asarray(count))
        if collect:
            collected[int(slot)] = count
    # One leftover step first; cycles of 5 steps end at iterates 6 and 11.
    assert collected == {0: 5, 1: 6, 2: 10, 3: 11}
    assert float(schedule.factor(jnp.asarray(1))) == 1.0  # the leftover step
    np.testing.assert_allclose(schedule.factor(jnp.asarray(7)), 1.0)  # a restart
    assert not bool(schedule.sampling(jnp.asarray(7))) and bool(schedule.sampling(jnp.asarray(10)))


def test_snapshot_ensemble_keeps_the_iterates_at_the_cycle_ends():
    tx = methods.make("snapshot_ensemble", num_cycles=3, burn_in=0.0).optimizer(optax.sgd(0.1), 9)
    params = {"w": jnp.array([2.0, -1.0])}
    state = tx.init(params)
    iterates = []
    for _ in range(9):
        grads = jax.tree.map(lambda p: p, params)  # the gradient of ||w||^2 / 2
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        iterates.append(params["w"])
    np.testing.assert_allclose(state.snapshots["w"], jnp.stack(iterates)[2::3], rtol=1e-6)


def test_csgld_samples_match_the_bayesian_linear_regression_posterior():
    """Full-batch gradients, temperature 1/N and weight decay 1/(prior^2 N): the chain's
    stationary law is the exact posterior. Tolerance: the mean within 0.25 posterior
    sd and each variance within 25% (400 correlated samples, and the Euler scheme's
    step-size bias of a few percent)."""
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (N, 2))
    y = x @ jnp.array([0.7, -0.4]) + NOISE * jax.random.normal(ky, (N,))
    precision = jnp.eye(2) / PRIOR**2 + x.T @ x / NOISE**2
    covariance = jnp.linalg.inv(precision)
    mean = covariance @ x.T @ y / NOISE**2

    def loss(theta):  # the per-example mean NLL
        return jnp.mean(jnp.square(y - x @ theta)) / (2 * NOISE**2)

    method = methods.make(
        "csgld",
        step_size=0.05,
        temperature=1.0 / N,
        weight_decay=1.0 / (PRIOR**2 * N),
        num_cycles=40,
        samples_per_cycle=10,
        exploration=0.0,  # noise-free exploration would pull each cycle to the mode
        burn_in=0.0,
    )
    total = 40 * 100
    tx = method.optimizer(optax.identity(), total)

    def step(carry, _):
        theta, state = carry
        updates, state = tx.update(jax.grad(loss)(theta), state, theta)
        return (theta + updates, state), None

    theta = jnp.zeros(2)
    (_, state), _ = jax.lax.scan(step, (theta, tx.init(theta)), None, length=total)
    samples = np.asarray(state.snapshots)  # [400, 2]
    sd = np.sqrt(np.diag(covariance))
    print("mean", samples.mean(0), np.asarray(mean), "var", samples.var(0), sd**2)
    assert np.all(np.abs(samples.mean(0) - mean) < 0.25 * sd)
    np.testing.assert_allclose(samples.var(0), sd**2, rtol=0.25)


def test_multiswag_draws_each_member_from_its_own_swag_posterior():
    k = jax.random.split(jax.random.key(1), 4)
    members, rank = 3, 2
    mean = {"w": jax.random.normal(k[0], (members, 4))}
    moments = swag.MomentsState(
        inner=(),
        count=jnp.asarray(10),
        collected=jnp.asarray(5),
        mean=mean,
        second_moment={"w": jnp.square(mean["w"]) + 0.1},
        deviations={"w": jax.random.normal(k[1], (rank, members, 4))},
    )
    sample = jax.jit(multiswag.member_sample, static_argnums=(2, 3))
    draw = sample(moments, k[2], 0.5, members)["w"]
    keys = jax.random.split(k[2], members)
    want = jnp.stack(
        [
            jax.jit(swag.sample, static_argnums=2)(moments, keys[m], 0.5)["w"][m]
            for m in range(members)
        ]
    )
    np.testing.assert_allclose(draw, want, rtol=1e-6)
    assert not np.allclose(draw[0] - mean["w"][0], draw[1] - mean["w"][1])

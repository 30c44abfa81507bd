"""SWAG: the tracked moments against numpy, the sampler, and SWA as its special case."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from relbench import configs, methods
from relbench.errors import UsageError
from relbench.methods import swag
from relbench.train.ensemble_eval import load_run
from relbench.train.loop import train_and_evaluate
from relbench.train.sharding import data_mesh


def run_optimizer(tx, params, steps, seed=0):
    """SGD-like updates on random gradients; returns the final state and every iterate."""
    state, iterates = tx.init(params), []
    rng = np.random.default_rng(seed)
    update = jax.jit(tx.update)
    for _ in range(steps):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        iterates.append(jax.tree.map(np.asarray, params))
    return state, iterates


PARAMS = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros((2,))}}


def test_collection_schedule_spaces_the_iterates_and_ends_at_the_last_step():
    first, every = swag.collection_schedule(200, 0.5, 20)
    assert (first, every) == (105, 5)
    assert len(range(first, 201, every)) == 20
    first, every = swag.collection_schedule(10, 0.75, 20)  # a phase shorter than n
    assert list(range(first, 11, every)) == [8, 9, 10]


@pytest.mark.parametrize("rank", [0, 3])
def test_moments_equal_numpy_statistics_of_the_collected_iterates(rank):
    total, collected = 40, 6
    tx = swag.track_moments(optax.sgd(0.1, momentum=0.9), total, 0.5, collected, rank)
    state, iterates = run_optimizer(tx, PARAMS, total)
    first, every = swag.collection_schedule(total, 0.5, collected)
    chosen = [iterates[count - 1] for count in range(first, total + 1, every)]
    assert int(state.collected) == len(chosen) == collected
    for path in (("dense", "kernel"), ("dense", "bias")):
        stack = np.stack([it[path[0]][path[1]] for it in chosen]).astype(np.float64)
        mean = state.mean[path[0]][path[1]]
        variance = state.second_moment[path[0]][path[1]] - mean**2
        np.testing.assert_allclose(mean, stack.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(variance, stack.var(0), rtol=1e-3, atol=1e-6)
        if rank:  # the last K deviations from the running mean, in their ring slots
            deviations = state.deviations[path[0]][path[1]]
            for i in range(collected - rank, collected):
                running = stack[: i + 1].mean(0)
                np.testing.assert_allclose(
                    deviations[i % rank], stack[i] - running, rtol=1e-4, atol=1e-5
                )


def test_the_wrapped_optimizer_moves_the_parameters_as_the_inner_one():
    inner = optax.adam(1e-2)
    _, wrapped = run_optimizer(swag.track_moments(inner, 10, 0.5, 3, 2), PARAMS, 10)
    _, plain = run_optimizer(inner, PARAMS, 10)
    jax.tree.map(np.testing.assert_array_equal, wrapped[-1], plain[-1])


def test_samples_have_the_posterior_mean_and_covariance():
    tx = swag.track_moments(optax.sgd(0.3), 30, 0.0, 10, 4)
    state, _ = run_optimizer(tx, {"w": jnp.zeros((3,))}, 30)
    keys = jax.random.split(jax.random.key(0), 20_000)
    draws = np.asarray(jax.vmap(lambda k: swag.sample(state, k, 1.0)["w"])(keys), np.float64)
    mean, second = np.asarray(state.mean["w"]), np.asarray(state.second_moment["w"])
    deviations = np.asarray(state.deviations["w"], np.float64)  # [K, 3]
    covariance = (np.diag(second - mean**2) + deviations.T @ deviations / 3) / 2
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * np.sqrt(covariance.max() / 20_000))
    np.testing.assert_allclose(np.cov(draws.T), covariance, rtol=0.06, atol=1e-6)


def swag_config(model="mlp", **hparams):
    config = configs.load(f"experiments/digits_{model}.py:swag,smoke")
    with config.unlocked():
        config.train.num_epochs = 1.0
        config.method.update(start_fraction=0.5, num_collected=4, rank=2, num_samples=3)
        config.method.update(hparams)
    return config


def test_rank_zero_one_sample_at_the_mean_is_swa(tmp_path):
    """SWAG(rank 0, one sample, scale 0) predicts with the SWA mean and the batch-norm
    statistics refitted under it: the model's deterministic pass on the final state."""
    config = swag_config("cnn", rank=0, num_samples=1, scale=0.0)
    train_and_evaluate(config, tmp_path)
    run = load_run(tmp_path, data_mesh())
    state, exp = run.state, run.exp
    jax.tree.map(np.testing.assert_array_equal, state.params, state.opt_state.mean)
    inputs = exp.dataset.eval_sets["test"].source.read(np.arange(16))["input"]
    logits, _ = exp.method.predict_fn(exp.model.apply, state, inputs, run.eval_key)
    swa_logits, _ = exp.model.apply(state.variables, inputs, train=False)
    assert logits.shape == swa_logits.shape == (1, 16, exp.dataset.num_classes)
    np.testing.assert_allclose(logits, swa_logits, rtol=1e-5, atol=1e-5)
    # The one sample's statistics are the SWA mean's.
    jax.tree.map(
        lambda s, m: np.testing.assert_allclose(s[0], m, rtol=1e-5, atol=1e-6),
        state.fitted["batch_stats"],
        state.collections["batch_stats"],
    )


def test_swag_samples_are_distinct_members_and_learn(tmp_path):
    results = train_and_evaluate(swag_config(), tmp_path)
    assert results["test"]["disagreement"] > 0 and results["test"]["mutual_information"] > 0
    run = load_run(tmp_path, data_mesh())
    inputs = run.exp.dataset.eval_sets["test"].source.read(np.arange(8))["input"]
    logits, _ = run.exp.method.predict_fn(run.exp.model.apply, run.state, inputs, run.eval_key)
    assert logits.shape[0] == 3 and not np.allclose(logits[0], logits[1], atol=1e-4)
    assert results["test"]["accuracy"] > 0.5  # 8 classes: chance is 0.125


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"rank": 3, "num_collected": 2}, "rank <= num_collected"),
        ({"start_fraction": 1.0}, "start_fraction"),
        ({"scale": -1.0}, "scale"),
    ],
)
def test_bad_hyperparameters_are_one_line_errors(hparams, message):
    with pytest.raises(UsageError, match=message):
        methods.make("swag", **hparams)

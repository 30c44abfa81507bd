"""Full-network Laplace: KFAC per layer against the exact GGN (jax.jacfwd), KFC of a
convolution against a numpy patch reference, the GGN diagonal against the exact one, the
fit through the loop (sharded, streamed) against one unsharded pass, and the posterior
on digits against the MAP network."""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relbench import configs
from relbench.errors import UsageError
from relbench.models import MLP
from relbench.posthoc import laplace
from relbench.posthoc import network_curvature as curvature
from relbench.posthoc.network_laplace import layer_entries
from relbench.train import loop, sharding
from relbench.train.sharding import data_mesh
from tests.posthoc.conftest import TEST, TRAIN, VALIDATION

K = 3


def _exact_ggn(forward, params, paths, x):
    """``sum_n J_n^T Lambda_n J_n`` over the flattened ``paths``, by jax.jacfwd."""
    flat = curvature.flatten(params)
    sizes = [flat[p].size for p in paths]
    theta = jnp.concatenate([flat[p].reshape(-1) for p in paths])

    def logits(theta):
        pieces = jnp.split(theta, np.cumsum(sizes)[:-1])
        sub = {p: v.reshape(flat[p].shape) for p, v in zip(paths, pieces, strict=True)}
        return forward(curvature.unflatten({**flat, **sub}), x)[0]  # [N, K]

    jacobian = jax.jacfwd(logits)(theta)  # [N, K, P]
    probs = jax.nn.softmax(logits(theta))
    hessian = jax.vmap(jnp.diag)(probs) - probs[:, :, None] * probs[:, None, :]
    return jnp.einsum("nkp,nkl,nlq->pq", jacobian, hessian, jacobian)


def _mlp(n=1):
    model = MLP(num_classes=K, hidden_sizes=(4,))
    x = jax.random.normal(jax.random.key(0), (n, 5))
    params = model.init(jax.random.key(1), x, train=False)["params"]
    return (lambda p, x: model.apply({"params": p}, x, train=False)[0]), params, x


def test_kfac_of_each_layer_of_a_two_layer_net_on_one_example_is_its_exact_ggn_block():
    forward, params, x = _mlp()
    step = laplace.make(subset="all", structure="kfac", link="glm", prior_tuning="marglik_grid")

    @jax.jit
    def check(params, x):
        layers = curvature.kfac_layers(forward, params, curvature.select(params, "all"), x)
        sums, _ = curvature.kfac_sums(forward, params, layers, x, jnp.ones((1, K)) / K, jnp.ones(1))
        # The block of [kernel (row-major), bias]: the layer's W [D_in + 1, D_out].
        exact = {p: _exact_ggn(forward, params, [f"{p}/kernel", f"{p}/bias"], x) for p in sums}
        batch = {"input": x, "label": jnp.zeros(1, jnp.int32)}
        statistics = step.network.init(params, forward, batch)
        statistics = step.network.accumulate(statistics, params, forward, batch)
        return sums, exact, step.network.finish(statistics, params), statistics["log_lik"]

    sums, exact, fitted, log_lik = check(params, x)
    assert sorted(sums) == ["DenseHead_0/Dense_0", "Dense_0"]
    for path, (a, g) in sums.items():
        np.testing.assert_allclose(jnp.kron(a, g), exact[path], atol=1e-6)
    # The fitted spectrum's log det(H + delta I) is that of the block-diagonal A (x) G,
    # and the tuned delta maximizes the evidence computed densely from those blocks.
    values = [
        jnp.outer(c["a_values"], c["g_values"]).reshape(-1)
        for c in layer_entries(fitted["curvature"]).values()
    ]
    blocks = np.asarray(jax.scipy.linalg.block_diag(*(jnp.kron(a, g) for a, g in sums.values())))
    theta = np.concatenate([np.ravel(v) for v in jax.tree.leaves(params)])

    def dense_evidence(delta):
        log_det = np.linalg.slogdet(blocks + delta * np.eye(len(blocks)))[1]
        size = len(theta)
        return log_lik - delta / 2 * theta @ theta + size / 2 * np.log(delta) - log_det / 2

    delta = float(jnp.exp(fitted["log_prior_precision"]))
    want = np.linalg.slogdet(blocks + delta * np.eye(len(blocks)))[1]
    np.testing.assert_allclose(jnp.sum(jnp.log(jnp.concatenate(values) + delta)), want, rtol=1e-5)
    assert 1e-3 < delta < 1e3  # inside the search range [1e-4, 1e4]
    assert dense_evidence(delta) >= max(dense_evidence(delta * 1.1), dense_evidence(delta / 1.1))


class TinyConv(nn.Module):
    @nn.compact
    def __call__(self, x):
        s = nn.Conv(2, (2, 3), strides=(2, 1), padding=((1, 0), (1, 1)))(x)  # [N, H', W', 2]
        return nn.Dense(K)(s.mean((1, 2)))[None]  # [1, N, K]


def _numpy_patches(x, kernel=(2, 3), strides=(2, 1), padding=((1, 0), (1, 1))):
    """``[N, T, kh*kw*C + 1]``: every window, row-major (kh, kw, C), then the bias' 1."""
    x = np.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    n, h, w, _ = x.shape
    rows = [
        [
            np.append(x[i, r : r + kernel[0], c : c + kernel[1]].reshape(-1), 1.0)
            for r, c in itertools.product(
                range(0, h - kernel[0] + 1, strides[0]), range(0, w - kernel[1] + 1, strides[1])
            )
        ]
        for i in range(n)
    ]
    return np.asarray(rows)


def test_conv_kfac_equals_a_numpy_patch_reference():
    model = TinyConv()
    inputs = jax.random.normal(jax.random.key(3), (2, 4, 5, 3))
    x = np.asarray(inputs, np.float64)
    params = model.init(jax.random.key(4), inputs)["params"]

    def forward(p, x):
        return model.apply({"params": p}, x)

    weights = np.array([1.0, 0.5])

    @jax.jit
    def factors(params, inputs):
        layers = curvature.kfac_layers(forward, params, ["Conv_0/kernel"], inputs)
        uniform = jnp.ones((2, K)) / K
        return curvature.kfac_sums(forward, params, layers, inputs, uniform, weights)[0]

    a, g = factors(params, inputs)["Conv_0"]
    patches = _numpy_patches(x)  # [N, T, 19]
    conv = {k: np.asarray(v, np.float64) for k, v in params["Conv_0"].items()}
    w = np.concatenate([conv["kernel"].reshape(-1, 2), conv["bias"][None]])
    outputs = patches @ w  # [N, T, 2]: the conv, from the patches and W
    np.testing.assert_allclose(
        outputs.reshape(2, 2, 5, 2),
        nn.Conv(2, (2, 3), strides=(2, 1), padding=((1, 0), (1, 1))).apply(
            {"params": params["Conv_0"]}, inputs
        ),
        rtol=1e-5,
        atol=1e-5,
    )
    dense = {k: np.asarray(v, np.float64) for k, v in params["Dense_0"].items()}
    logits = outputs.mean(1) @ dense["kernel"] + dense["bias"]
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    t = patches.shape[1]
    want_a = np.einsum("n,nti,ntj->ij", weights, patches, patches)
    want_g = np.zeros((2, 2))
    for i in range(2):
        root = np.diag(np.sqrt(p[i])) - np.outer(p[i], np.sqrt(p[i]))  # L L^T = Lambda
        for c in range(K):
            column = dense["kernel"] @ root[:, c] / t  # the same at every position
            want_g += weights[i] * t * np.outer(column, column) / t
    np.testing.assert_allclose(a, want_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g, want_g, rtol=1e-4, atol=1e-7)


def test_diag_ggn_is_the_diagonal_of_the_exact_ggn():
    forward, params, x = _mlp(n=3)
    paths = curvature.select(params, "Dense_0,DenseHead_0/Dense_0/kernel")
    assert paths == ["Dense_0/kernel", "Dense_0/bias", "DenseHead_0/Dense_0/kernel"]
    weights = jnp.array([1.0, 1.0, 0.0])  # the last row is padding

    @jax.jit
    def check(params, x):
        diag = curvature.diag_ggn(forward, params, paths, x, weights)
        return diag, jnp.diag(_exact_ggn(forward, params, paths, x[:2]))

    diag, exact = check(params, x)
    got = jnp.concatenate([diag[p].reshape(-1) for p in paths])
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-7)


def _nll_accuracy(logits, labels):
    probs = jax.nn.softmax(logits, -1).mean(0)
    nll = -jnp.mean(jnp.log(probs[jnp.arange(len(labels)), labels]))
    return float(nll), float(jnp.mean(jnp.argmax(probs, -1) == labels))


def test_full_network_laplace_improves_the_test_nll_of_the_map_digits_mlp(digits_mlp):
    """KFAC over every layer, fitted on the training part, the linearized predictive;
    the prior precision tuned on the validation part's NLL over a grid."""
    model, params, x, y = digits_mlp

    def forward(p, inputs):
        return model.apply({"params": p}, inputs, train=False)[0]

    step = laplace.make(
        subset="all", structure="kfac", link="glm", prior_tuning="none", num_samples=8
    )
    network = step.network
    train_x, train_y = x[TRAIN], y[TRAIN]
    batches = [
        {"input": train_x[i : i + 400], "label": train_y[i : i + 400]} for i in (0, 400, 800)
    ]
    accumulate = jax.jit(lambda s, p, b: network.accumulate(s, p, forward, b))
    statistics = network.init(params, forward, batches[0])
    for batch in batches:
        statistics = accumulate(statistics, params, batch)
    fitted = jax.jit(network.finish)(statistics, params)

    @jax.jit
    def predict(log_delta, inputs):
        tuned = {**fitted, "log_prior_precision": log_delta}
        return network.apply((forward(params, inputs), {}), tuned, params, forward, inputs)[0]

    held_out = x[VALIDATION.start :]  # validation, then test: one compiled predictive
    validation = slice(0, VALIDATION.stop - VALIDATION.start)
    test = slice(validation.stop, None)
    grid = jnp.log(jnp.array([10.0, 30.0, 100.0, 300.0, 1000.0]))
    logits = [predict(u, held_out) for u in grid]
    scores = [_nll_accuracy(z[:, validation], y[VALIDATION])[0] for z in logits]
    best = int(np.argmin(scores))
    map_nll, map_accuracy = _nll_accuracy(forward(params, x[TEST]), y[TEST])
    nll, accuracy = _nll_accuracy(logits[best][:, test], y[TEST])
    print(
        "delta", float(jnp.exp(grid[best])), "laplace", nll, accuracy, "map", map_nll, map_accuracy
    )
    assert nll < map_nll
    assert abs(accuracy - map_accuracy) <= 0.01


def test_network_laplace_in_the_loop_streams_the_split_like_one_pass():
    """Four fake devices, the validation set in padded batches of 64: the loop's fitted
    factors equal one unsharded pass over the set; the eval step reports the predictive
    beside the raw model."""
    config = configs.load("experiments/digits_mlp.py:deterministic,smoke")
    with config.unlocked():
        config.train.eval_batch_size = 64
        config.posthoc = ("laplace",)
        config.posthoc_hparams.laplace.update(
            subset="Dense_0,DenseHead_0", link="glm", prior_tuning="none", num_samples=4
        )
    exp = loop.build(config)
    mesh, key = data_mesh(), jax.random.key(0)
    initialize = functools.partial(loop.init_state, exp)
    state_sharding = sharding.state_sharding(
        mesh, jax.eval_shape(initialize, key), exp.method.partition_rules
    )
    state = jax.jit(initialize, out_shardings=state_sharding)(key)
    eval_step = loop.make_eval_step(exp, mesh, state_sharding)
    fitted = loop.fit_posthoc(exp, state, eval_step.predict, key, mesh)

    source = exp.dataset.eval_sets["validation"].source
    batch = source.read(np.arange(len(source)))
    assert len(source) % 64 != 0  # the last batch is padded

    def forward(p, inputs):
        return exp.method.predict_fn(exp.model.apply, state.replace(params=p), inputs, None)[0]

    network = exp.posthoc[0].step.network
    whole = network.accumulate(
        network.init(state.params, forward, batch), state.params, forward, batch
    )
    a = layer_entries(whole["sums"])["Dense_0"]["a"]
    values = layer_entries(fitted[0]["curvature"])["Dense_0"]["a_values"]
    np.testing.assert_allclose(values, jnp.linalg.eigvalsh(a), rtol=1e-4, atol=1e-3)

    first = next(iter(loop.split_data(exp, mesh)("validation")))
    statistics = eval_step(state, first, key, False, fitted)
    after, raw = statistics[""][0], statistics["raw/"][0]  # the first suite's sums
    assert after["count"] == raw["count"] == 64 and after["nll"] != raw["nll"]


def test_a_subset_that_names_nothing_or_no_layer_is_one_clear_error():
    forward, params, x = _mlp()
    batch = {"input": x, "label": jnp.zeros(1, jnp.int32)}
    with pytest.raises(UsageError, match="names no parameter; the network's are: .*Dense_0"):
        laplace.make(subset="Conv_0", link="glm", prior_tuning="none").network.init(
            params, forward, batch
        )
    with pytest.raises(UsageError, match="holds no flax.linen.Dense or Conv layer"):
        laplace.make(subset="Dense_0/bias", link="glm", prior_tuning="none").network.init(
            params, forward, batch
        )
    with pytest.raises(UsageError, match="prior_tuning 'nll' is unknown with subset 'all'"):
        laplace.make(subset="all")

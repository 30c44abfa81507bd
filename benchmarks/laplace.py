"""Last-layer KFAC Laplace: fit time against one training epoch, and the memory of a
1,000-class head over 2,048 features.

1. ResNet-20 (``relbench.models.CifarResNet``) on CIFAR-shaped mock data (``--examples``
   images 32x32x3, 10 classes): one training epoch (jitted SGD steps of ``--batch``)
   against the Laplace fit (the evaluation pass that gives the penultimate features
   and logits, then ``relbench.posthoc.laplace`` with ``structure="kfac"``), both timed
   after compilation, side by side in one process. Goal: fit <= 1.5x the epoch.
   With ``--network-examples N``: the same for full-network KFAC (every conv and dense
   layer, ``subset="all"``) on N examples, as the loop streams it (no goal: it costs
   K = 10 backward passes per batch).
2. The fit of a 1,000-class head over 2,048 features (ResNet-50's) on ``--head-examples``
   examples: XLA's compiled memory (arguments + outputs + temporaries) and the
   process's peak resident memory. Goal: < 2 GB.

    .venv/bin/python benchmarks/laplace.py [--examples 10000 --batch 128]
        [--network-examples 1024] [--skip head,last_layer]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from relbench.models import CifarResNet
from relbench.posthoc import laplace


def timed(fn, *args):
    jax.block_until_ready(fn(*args))  # compile
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def resnet_ratio(examples: int, batch: int, subset: str = "last_layer") -> dict:
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(examples, 32, 32, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, examples))
    model = CifarResNet(num_classes=10, depth=20)
    variables = model.init(jax.random.key(0), images[:2], train=False)
    tx = optax.sgd(0.1, momentum=0.9)
    steps = examples // batch

    def loss(params, stats, x, y):
        (logits, _), updates = model.apply(
            {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
        )
        nll = optax.softmax_cross_entropy_with_integer_labels(logits[0], y).mean()
        return nll, updates["batch_stats"]

    @jax.jit
    def epoch(params, stats, opt_state, images, labels):  # the data as arguments, not constants
        def step(carry, i):
            params, stats, opt_state = carry
            x = jax.lax.dynamic_slice_in_dim(images, i * batch, batch)
            y = jax.lax.dynamic_slice_in_dim(labels, i * batch, batch)
            grads, stats = jax.grad(loss, has_aux=True)(params, stats, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), stats, opt_state), None

        carry, _ = jax.lax.scan(step, (params, stats, opt_state), jnp.arange(steps))
        return carry

    params, stats = variables["params"], variables["batch_stats"]
    epoch_s = timed(epoch, params, stats, tx.init(params), images, labels)

    if subset == "last_layer":
        fit_s = timed(last_layer_fit(model, steps, batch), params, stats, images, labels)
    else:
        fit_s = timed(network_fit(model, steps, batch, subset), params, stats, images, labels)
    return {
        "subset": subset,
        "examples": steps * batch,
        "epoch_s": epoch_s,
        "kfac_fit_s": fit_s,
        "fit_over_epoch": fit_s / epoch_s,
    }


def last_layer_fit(model, steps: int, batch: int):
    """The evaluation pass (features and logits), then the last-layer KFAC fit."""
    step = laplace.make(structure="kfac", prior_tuning="marglik")

    @jax.jit
    def fit(params, stats, images, labels):
        def forward(x):
            return model.apply({"params": params, "batch_stats": stats}, x, train=False)

        chunks = images[: steps * batch].reshape(steps, batch, *images.shape[1:])
        logits, extras = jax.lax.map(forward, chunks)  # [steps, 1, batch, ...]
        merge = lambda a: jnp.moveaxis(a, 0, 1).reshape(1, -1, a.shape[-1])  # noqa: E731
        outputs = (merge(logits), {"features": merge(extras["features"])})
        return step.fit(outputs, {"label": labels[: steps * batch]})

    return fit


def network_fit(model, steps: int, batch: int, subset: str):
    """KFAC over ``subset``'s conv and dense layers as the loop fits it: one jitted
    ``accumulate`` per batch (K = 10 backward passes each), then ``finish``."""
    step = laplace.make(subset=subset, structure="kfac", prior_tuning="marglik", link="glm")
    network = step.network
    assert network is not None

    def forward_of(stats):
        def forward(params, x):
            return model.apply({"params": params, "batch_stats": stats}, x, train=False)[0]

        return forward

    accumulate = jax.jit(lambda s, p, b, st: network.accumulate(s, p, forward_of(st), b))
    init = jax.jit(lambda p, b, st: network.init(p, forward_of(st), b))
    finish = jax.jit(network.finish)

    def fit(params, stats, images, labels):
        batches = [
            {
                "input": images[i * batch : (i + 1) * batch],
                "label": labels[i * batch : (i + 1) * batch],
            }
            for i in range(steps)
        ]
        statistics = init(params, batches[0], stats)
        for b in batches:
            statistics = accumulate(statistics, params, b, stats)
        return finish(statistics, params)

    return fit


def head_memory(examples: int, classes: int = 1000, features: int = 2048) -> dict:
    rng = np.random.default_rng(1)
    phi = jnp.asarray(rng.normal(size=(1, examples, features)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(features, classes)) / np.sqrt(features), jnp.float32)
    logits = phi @ head
    labels = jnp.asarray(rng.integers(0, classes, examples))
    step = laplace.make(structure="kfac", prior_tuning="marglik")
    fit = jax.jit(step.fit)
    compiled = fit.lower((logits, {"features": phi}), {"label": labels}).compile()
    analysis = compiled.memory_analysis()
    xla_bytes = None
    if analysis is not None:
        xla_bytes = (
            analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
            + analysis.temp_size_in_bytes
        )
    start = time.perf_counter()
    jax.block_until_ready(compiled((logits, {"features": phi}), {"label": labels}))
    return {
        "head": f"{classes} x {features}",
        "examples": examples,
        "xla_fit_bytes": xla_bytes,
        "xla_fit_gb": None if xla_bytes is None else xla_bytes / 2**30,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "fit_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--head-examples", type=int, default=4096)
    parser.add_argument("--network-examples", type=int, default=0)  # 0: no full-network row
    parser.add_argument("--skip", default="", help="comma-separated: head,last_layer")
    args = parser.parse_args()
    skip = args.skip.split(",")
    if "head" not in skip:
        print(json.dumps({"head_fit": head_memory(args.head_examples)}), flush=True)
    if "last_layer" not in skip:
        print(json.dumps({"resnet20": resnet_ratio(args.examples, args.batch)}), flush=True)
    if args.network_examples:
        row = resnet_ratio(args.network_examples, args.batch, subset="all")
        print(json.dumps({"resnet20": row}), flush=True)


if __name__ == "__main__":
    main()

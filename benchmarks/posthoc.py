"""Post-hoc step speed: fit + apply of every step vs one ResNet-20 forward pass.

    python benchmarks/posthoc.py [--n 100000] [--classes 100] [--bank 100000]

On ``--n`` examples x ``--classes`` classes (synthetic logits, 64-wide penultimate
features like ResNet-20's, labels), each registered post-hoc step is fitted on all of
them (the detectors on a training set of ``--bank`` examples) and applied to all of
them in batches of ``--batch`` (as the loop applies a step to evaluation batches).
Measured side by side in one process: the wall time of fit + apply (after a warm-up
call that compiles them) divided by the wall time of one ResNet-20 (``resnet_cifar``,
depth 20, width 16, CIFAR-sized 32x32x3 inputs) forward pass over the same ``--n``
examples in the same batches. Target: every ratio < 2.

KNN: the bank holds ``--bank`` unit-normalized training features; the search is a
blocked top-k (``knn.block_size`` = 4096 bank rows at a time), so one batch holds
``batch x (4096 + k)`` float32 similarities (16.6 MB at batch 1000, k = 50) whatever
the bank's size. Regression steps (``conformal_residual``, ``conformal_normalized``,
``conformal_cqr``) run on ``--classes`` Gaussian outputs (and quantiles for CQR).

ODIN needs the model, not its outputs: its scores are computed inside every prediction
(``PosthocStep.input_extras``: a backward pass through the model and one forward pass
per candidate epsilon). Its row times the ResNet-20's prediction with that hook over the
``--n`` examples, then fit and apply on what it returns, against the same plain forward
pass; the ratio includes the forward pass itself (which the loop runs anyway), so ODIN
adds ``ratio - 1`` forward passes to every set it is evaluated on, its fit split too.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from relbench import models, posthoc

FEATURES = 64


def timed(fn) -> float:
    jax.block_until_ready(fn())  # warm-up: compilation
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def resnet20(classes: int):
    return models.make(
        "resnet_cifar",
        depth=20,
        width=16,
        num_classes=classes,
        layers=models.default_layers("resnet_cifar"),
    )


def resnet20_batches(n: int, batch: int, classes: int, steps=()):
    """``run() -> [outputs of each batch]``: the ResNet-20's prediction (with the
    ``input_extras`` of ``steps``) over ``n`` examples in batches of ``batch``."""
    model = resnet20(classes)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, 32, 32, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), x, train=False)

    def predict(v, x):
        return posthoc.predict_with_inputs(steps, lambda x: model.apply(v, x, train=False), x)

    predict = jax.jit(predict)
    return lambda: [predict(variables, x) for _ in range(-(-n // batch))]


def model_step_run(step, n: int, batch: int, classes: int):
    """A step that needs the model: its hooked prediction over ``n`` examples, fit on
    all of them, applied to every batch."""
    predict = resnet20_batches(n, batch, classes, [step])
    fit, apply = jax.jit(step.fit), jax.jit(step.apply)

    def run():
        batches = predict()
        outputs = jax.tree.map(lambda *b: jnp.concatenate(b, axis=1), *batches)
        params = fit(outputs, {})
        return [apply(b, params) for b in batches]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--bank", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    n, k, batch = args.n, args.classes, args.batch

    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, max(n, args.bank))
    centres = rng.normal(size=(k, FEATURES))
    features = (centres[labels] + 1.5 * rng.normal(size=(len(labels), FEATURES)))[None]
    logits = features @ centres.T * 0.5  # a linear head: ~97% accurate, NLL ~0.1
    logits, features = jnp.asarray(logits, jnp.float32), jnp.asarray(features, jnp.float32)
    labels = jnp.asarray(labels)
    variance = jnp.exp(0.1 * logits)
    regression_extras = {
        "variance": variance,
        "quantile_lower": logits - 1.0,
        "quantile_upper": logits + 1.0,
    }

    forward = timed(resnet20_batches(n, batch, k))
    print(f"ResNet-20 forward, {n} examples x 32x32x3 in batches of {batch}: {forward:.3f} s")
    print(f"{'step':24s} {'fit+apply s':>12s} {'ratio':>7s}")
    for name in posthoc.POSTHOC_STEPS.names():
        step = posthoc.make(name)
        fit, apply = jax.jit(step.fit), jax.jit(step.apply)
        if step.input_extras is not None:
            seconds = timed(model_step_run(step, n, batch, k))
            print(f"{name:24s} {seconds:12.3f} {seconds / forward:7.2f}", flush=True)
            continue
        if step.tasks == ("regression",):
            outputs = lambda s: (  # noqa: E731
                logits[:, s],
                {key: value[:, s] for key, value in regression_extras.items()},
            )
            fit_rows, targets = slice(0, n), {"label": logits[0, :n] + 0.5}
        else:
            outputs = lambda s: (logits[:, s], {"features": features[:, s]})  # noqa: E731
            fit_rows = slice(0, args.bank) if step.split == "train" else slice(0, n)
            targets = {"label": labels[fit_rows]}

        def run(fit=fit, apply=apply, outputs=outputs, fit_rows=fit_rows, targets=targets):
            params = fit(outputs(fit_rows), targets)
            return [apply(outputs(slice(i, i + batch)), params) for i in range(0, n, batch)]

        seconds = timed(run)
        print(f"{name:24s} {seconds:12.3f} {seconds / forward:7.2f}", flush=True)


if __name__ == "__main__":
    main()

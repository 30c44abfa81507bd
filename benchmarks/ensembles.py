"""Efficient ensembles: train-step time ratios measured side by side, and parameter counts.

    PYTHONPATH=. python benchmarks/ensembles.py [--model cnn|mlp] [--batch-size 128] ...

* deep ensemble: one step of the M-member ensemble trained as one vectorized program
  (``deep_ensemble``) vs M steps of M separately jitted members (``deterministic``),
  i.e. the time to update all M members once. Target: ratio < 1.
* BatchEnsemble: one step of ``batchensemble`` (M members, the batch tiled M times
  inside the model) vs one step of ``deterministic`` on the M-times tiled batch, the
  same FLOPs up to BatchEnsemble's elementwise products (its first layer takes
  ``alpha``'s gradient from the members' kernel gradients, not from an input gradient
  that a deterministic network never computes: ``layers.batchensemble.scaled_product``).
  Target: ratio <= 1.2. The FLOP ratio of the two steps (XLA's cost analysis) is
  printed beside it: the ratio a purely compute-bound step would show. Its convolutions
  fold ``alpha`` into per-member kernels on CPU, where that is faster, and not
  elsewhere (``--[no-]fold-conv-alpha`` to choose; the method's default is not to fold).
* parameter counts of every ensemble method on the same model.

Every step is the loop's step (``value_and_grad`` of the method's ``loss_fn``, then the
optimizer), jitted with donated state; the variants run in interleaved rounds and the
median round is reported, so load on the machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from relbench import methods, models
from relbench.methods.method import rng_dict
from relbench.train import optimizers


def make_step(method, model, optimizer, num_train_examples):
    """The loop's train step (relbench.train.loop.make_train_step), without the loop's
    data and output dependencies so that it runs on a bare accelerator image."""

    def step(params, collections, opt_state, batch, key):
        rngs = rng_dict(key, method.rng_streams)

        def objective(p):
            return method.loss_fn(
                model.apply,
                {"params": p, **collections},
                batch,
                rngs,
                step=0,
                num_train_examples=num_train_examples,
            )

        (loss, (updates, _)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        changes, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), {**collections, **updates}, opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1, 2))


class Variant:
    """One method on one model, its state, and a timed ``run(steps)``."""

    def __init__(self, name, method_name, model_kwargs, batch, key, **hparams):
        self.name = name
        self.method = methods.make(method_name, **hparams)
        fields = {k: v for k, v in model_kwargs.items() if k != "name"}
        layers = self.method.layers(models.default_layers(model_kwargs["name"]))
        self.model = models.make(model_kwargs["name"], **fields, layers=layers)
        total_steps = 1000
        self.optimizer = self.method.optimizer(
            optimizers.make(
                total_steps=total_steps,
                decay_mask=self.method.decay_mask,
                learning_rate=0.01,
                weight_decay=1e-4,
            ),
            total_steps,
        )
        dummy = batch["input"][:1]
        if self.method.init_inputs is not None:
            dummy = self.method.init_inputs(dummy)
        rngs = {"params": key, **rng_dict(key, self.method.rng_streams)}
        variables = dict(jax.jit(lambda r: self.model.init(r, dummy, train=False))(rngs))
        self.params = variables.pop("params")
        self.collections = variables
        self.opt_state = self.optimizer.init(self.params)
        self.batch = batch
        self.step = make_step(self.method, self.model, self.optimizer, 50_000)
        self.key = key

    def flops(self) -> float:
        """FLOPs of one step: XLA's cost analysis of the step lowered for the CPU (GPU
        lowerings offer none), which counts every matmul and convolution."""
        args = (self.params, self.collections, self.opt_state, self.batch, self.key)
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
        with jax.default_device(jax.devices("cpu")[0]):
            lowered = self.step.lower(*abstract)
        return float((lowered.cost_analysis() or {}).get("flops", float("nan")))

    def parameter_count(self) -> int:
        return sum(leaf.size for leaf in jax.tree.leaves(self.params))

    def run(self, steps: int) -> None:
        for i in range(steps):
            self.params, self.collections, self.opt_state, loss = self.step(
                self.params,
                self.collections,
                self.opt_state,
                self.batch,
                jax.random.fold_in(self.key, i),
            )
        loss.block_until_ready()


def timed(run, steps: int) -> float:
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--ensemble-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--unroll-conv",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deep_ensemble.unroll_conv",
    )
    parser.add_argument(
        "--fold-conv-alpha",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batchensemble.fold_conv_alpha (default: fold on CPU only, where folding is "
        "faster; the method's own default is not to fold)",
    )
    args = parser.parse_args()
    if args.fold_conv_alpha is None:
        args.fold_conv_alpha = jax.default_backend() == "cpu"

    m, b = args.ensemble_size, args.batch_size
    if args.model == "cnn":
        model = {"name": "cnn", "num_classes": 10, "features": (32, 64), "hidden_size": 128}
    else:
        model = {"name": "mlp", "num_classes": 10, "hidden_sizes": (512, 512)}
    key = jax.random.key(0)
    shape = (args.image_size, args.image_size, 3)

    def batch_of(rows):
        return {
            "input": jax.random.normal(key, (rows, *shape)),
            "label": jax.random.randint(key, (rows,), 0, 10),
        }

    batch, tiled_batch = batch_of(b), batch_of(m * b)
    vectorized = Variant(
        "deep_ensemble",
        "deep_ensemble",
        model,
        batch,
        key,
        ensemble_size=m,
        unroll_conv=args.unroll_conv,
    )
    members = [
        Variant(f"member{i}", "deterministic", model, batch, jax.random.fold_in(key, i))
        for i in range(m)
    ]
    batchensemble = Variant(
        "batchensemble",
        "batchensemble",
        model,
        batch,
        key,
        ensemble_size=m,
        fold_conv_alpha=args.fold_conv_alpha,
    )
    tiled = Variant("deterministic_tiled", "deterministic", model, tiled_batch, key)

    def sequential(steps):
        for member in members:
            member.run(steps)

    runs = {
        "deep_ensemble_vectorized": vectorized.run,
        "deep_ensemble_sequential": sequential,
        "batchensemble": batchensemble.run,
        "deterministic_tiled": tiled.run,
    }
    for run in runs.values():
        run(2)  # compile and warm up
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            times[name].append(timed(run, args.steps))
    median = {name: statistics.median(t) for name, t in times.items()}

    print(
        f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; model {args.model}, "
        f"M={m}, batch {b}, input {shape}, unroll_conv={args.unroll_conv}, "
        f"fold_conv_alpha={args.fold_conv_alpha}; "
        f"median of {args.rounds} rounds of {args.steps} steps"
    )
    for name, seconds in median.items():
        print(f"  {name:26s} {seconds * 1e3:9.3f} ms/step")
    de_ratio = median["deep_ensemble_vectorized"] / median["deep_ensemble_sequential"]
    be_ratio = median["batchensemble"] / median["deterministic_tiled"]
    be_flops = batchensemble.flops() / tiled.flops()
    print(f"deep ensemble vectorized / sequential: {de_ratio:.3f} (target < 1)")
    print(
        f"batchensemble / deterministic on tiled batch: {be_ratio:.3f} (target <= 1.2; "
        f"FLOP ratio {be_flops:.3f})"
    )

    print("parameters:")
    counts = {
        "deterministic": members[0].parameter_count(),
        f"batchensemble M={m}": batchensemble.parameter_count(),
        f"deep_ensemble M={m}": vectorized.parameter_count(),
    }
    for method_name in ("rank1", "mimo"):
        variant = Variant(method_name, method_name, model, batch, key, ensemble_size=m)
        counts[f"{method_name} M={m}"] = variant.parameter_count()
    for name, count in counts.items():
        ratio = count / counts["deterministic"]
        print(f"  {name:26s} {count:10d}  ({ratio:.2f}x deterministic)")


if __name__ == "__main__":
    jnp.zeros(())  # initialize the backend before timing anything
    main()

"""Forward+backward time of uncertainty layers relative to their plain counterparts.

    PYTHONPATH=. python benchmarks/layers.py [--scale small|full] [--repeats N] [--nnx]

Each case times one jitted training step of a layer (forward, ``sum(out**2)`` loss,
gradient w.r.t. the parameters, and the layer's own state update) next to the same
step of the plain layer it replaces, in the same process, alternating the two so that
load on the machine hits both alike. It prints the median times and their ratio.
Evaluation-time cases (the SNGP head's predictive variance by Cholesky) time the
forward pass only. Ratios, not bare times, are the result.

Cases: the SNGP head (1024 random features, exact Laplace precision update) vs a dense
head; a spectral-normalized dense and conv layer (one power iteration, on the conv
operator) vs ``nn.Dense``/``nn.Conv``.

With ``--nnx``: every NNX layer (``relbench.nnx``) against its Linen twin on the same
shapes, both as one jitted training step (the NNX one through ``nnx.split`` /
``nnx.merge`` around the step, as the loop runs NNX models); the goal is a ratio
<= 1.05. Each row also prints the ratio of the two compiled programs' FLOPs (XLA's
cost analysis, free of the machine's load): 1.000 for every layer on XLA:CPU, so what
remains of a time ratio is dispatch and noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import time
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from relbench import layers as L
from relbench import nnx as N
from relbench.layers import variational as V
from relbench.layers.gaussian_process import LAPLACE, RandomFeatureGaussianProcess
from relbench.layers.heads import DenseHead
from relbench.layers.spectral_norm import SPECTRAL_STATS, SpectralNormConv, SpectralNormDense
from relbench.nnx.model import STREAMS

SIZES = {
    # batch, features in, classes, dense width, conv image side, conv channels
    "small": dict(batch=128, width=256, classes=10, side=16, channels=32),
    "full": dict(batch=512, width=1024, classes=100, side=32, channels=128),
}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make_step: Callable[[], Callable[[], jax.Array]]  # builds a jitted, ready-to-call step


def _train_step(module, x, mutable=(), takes_train=True, streams=()):
    """A no-argument jitted step: loss, grads w.r.t. params, the state update."""
    train_kwargs = (lambda train: {"train": train}) if takes_train else (lambda train: {})
    rngs = {s: jax.random.key(3) for s in streams}
    variables = module.init({"params": jax.random.key(0), **rngs}, x, **train_kwargs(False))
    params = variables.get("params", {})
    rest = {k: v for k, v in variables.items() if k != "params"}

    @jax.jit
    def step(params, rest, x):
        def loss(p):
            out, updates = module.apply(
                {"params": p, **rest}, x, **train_kwargs(True), rngs=rngs, mutable=list(mutable)
            )
            out = out[0] if isinstance(out, tuple) else out
            return jnp.sum(out**2), updates

        (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, grads, updates

    return _with_flops(step, params, rest, x)


def _with_flops(step, *args):
    """``step`` bound to ``args``, with ``.flops``: XLA's cost analysis of the compiled
    program (a count, free of the machine's load)."""
    cost = step.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost

    def bound():
        return step(*args)

    bound.flops = float(cost.get("flops", float("nan")))
    return bound


def _nnx_train_step(make_module, x):
    """The NNX layer's step: ``nnx.split`` outside, ``nnx.merge`` inside the jitted step."""
    model = make_module(nnx.Rngs(0, **{s: 3 for s in STREAMS}))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def step(params, rest, x):
        def loss(p):
            # Fresh variables at this trace level, so that the layer may update them.
            m = nnx.merge(graphdef, p, jax.tree.map(lambda v: v, rest))
            out = m(x)
            out = out[0] if isinstance(out, tuple) else out
            return jnp.sum(out**2), nnx.state(m, nnx.Not(nnx.Param))

        (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, grads, updates

    return _with_flops(step, params, rest, x)


def nnx_cases(size: dict) -> list[tuple[Case, Case]]:
    """(Linen layer, its NNX twin) train steps on the same shapes, for every layer."""
    b, w, k, side, c = (size[n] for n in ("batch", "width", "classes", "side", "channels"))
    features = jax.random.normal(jax.random.key(1), (b, w))
    images = jax.random.normal(jax.random.key(2), (b // 4, side, side, c))
    image_size = (side, side)
    m = 4
    spectral = {"norm_bound": 0.95}
    het = {"num_factors": 4, "train_mc_samples": 32}
    table = [  # name, Linen module, its step options, NNX constructor, inputs
        (
            "SpectralNormDense",
            L.SpectralNormDense(w, **spectral),
            {"mutable": (SPECTRAL_STATS,)},
            lambda r: N.SpectralNormDense(w, w, **spectral, rngs=r),
            features,
        ),
        (
            "SpectralNormConv",
            L.SpectralNormConv(c, (3, 3), **spectral),
            {"mutable": (SPECTRAL_STATS,)},
            lambda r: N.SpectralNormConv(c, c, (3, 3), input_size=image_size, **spectral, rngs=r),
            images,
        ),
        (
            "RandomFeatureGaussianProcess F=1024",
            RandomFeatureGaussianProcess(k, 1024),
            {"mutable": (LAPLACE,)},
            lambda r: N.RandomFeatureGaussianProcess(w, k, num_features=1024, rngs=r),
            features,
        ),
        (
            "BatchEnsembleDense M=4",
            L.BatchEnsembleDense(w, ensemble_size=m),
            {"takes_train": False},
            lambda r: N.BatchEnsembleDense(w, w, ensemble_size=m, rngs=r),
            features,
        ),
        (
            "BatchEnsembleConv M=4",
            L.BatchEnsembleConv(c, (3, 3), ensemble_size=m),
            {"takes_train": False},
            lambda r: N.BatchEnsembleConv(c, c, (3, 3), ensemble_size=m, rngs=r),
            images,
        ),
        (
            "Rank1Dense M=4",
            L.Rank1Dense(w, ensemble_size=m),
            {"takes_train": False, "mutable": ("kl_divergence",), "streams": ("rank1",)},
            lambda r: N.Rank1Dense(w, w, ensemble_size=m, rngs=r),
            features,
        ),
        (
            "Rank1Conv M=4",
            L.Rank1Conv(c, (3, 3), ensemble_size=m),
            {"takes_train": False, "mutable": ("kl_divergence",), "streams": ("rank1",)},
            lambda r: N.Rank1Conv(c, c, (3, 3), ensemble_size=m, rngs=r),
            images,
        ),
        (
            "DenseReparameterization",
            V.DenseReparameterization(w),
            {"takes_train": False, "mutable": ("losses",), "streams": ("variational",)},
            lambda r: N.DenseReparameterization(w, w, rngs=r),
            features,
        ),
        (
            "DenseFlipout",
            V.DenseFlipout(w),
            {"takes_train": False, "mutable": ("losses",), "streams": ("variational",)},
            lambda r: N.DenseFlipout(w, w, rngs=r),
            features,
        ),
        (
            "ConvFlipout",
            V.ConvFlipout(c, (3, 3)),
            {"takes_train": False, "mutable": ("losses",), "streams": ("variational",)},
            lambda r: N.ConvFlipout(c, c, (3, 3), rngs=r),
            images,
        ),
        (
            "HeteroscedasticHead R=4 S=32",
            L.HeteroscedasticHead(k, **het),
            {"streams": ("heteroscedastic",)},
            lambda r: N.HeteroscedasticHead(w, k, **het, rngs=r),
            features,
        ),
        ("GaussianHead", L.GaussianHead(k), {}, lambda r: N.GaussianHead(w, k, rngs=r), features),
        (
            "MCDropout 0.1",
            L.MCDropout(0.1),
            {"takes_train": False, "streams": ("dropout",)},
            lambda r: N.MCDropout(0.1, rngs=r),
            features,
        ),
    ]
    return [
        (
            Case(f"linen {name}", functools.partial(_train_step, module, x, **options)),
            Case(f"nnx {name}", functools.partial(_nnx_train_step, make, x)),
        )
        for name, module, options, make, x in table
    ]


def _eval_step(module, x):
    variables = module.init(jax.random.key(0), x, train=False)
    step = jax.jit(lambda v, x: module.apply(v, x, train=False))
    return lambda: step(variables, x)


def cases(size: dict) -> list[tuple[Case, Case]]:
    b, w, k, side, c = (size[n] for n in ("batch", "width", "classes", "side", "channels"))
    features = jax.random.normal(jax.random.key(1), (b, w))
    images = jax.random.normal(jax.random.key(2), (b // 4, side, side, c))
    gp = RandomFeatureGaussianProcess(k, num_features=1024)
    dense_head = DenseHead(k)
    return [
        (
            Case("dense head: train step", lambda: _train_step(dense_head, features)),
            Case("sngp head (F=1024): train step", lambda: _train_step(gp, features, (LAPLACE,))),
        ),
        (
            Case("dense head: eval", lambda: _eval_step(dense_head, features)),
            Case("sngp head (F=1024): eval + variance", lambda: _eval_step(gp, features)),
        ),
        (
            Case(
                f"nn.Dense {w}->{w}: train step",
                lambda: _train_step(nn.Dense(w), features, takes_train=False),
            ),
            Case(
                f"SpectralNormDense {w}->{w}: train step",
                lambda: _train_step(
                    SpectralNormDense(w, norm_bound=0.95), features, (SPECTRAL_STATS,)
                ),
            ),
        ),
        (
            Case(
                f"nn.Conv 3x3 {c}->{c} on {side}x{side}: train step",
                lambda: _train_step(nn.Conv(c, (3, 3)), images, takes_train=False),
            ),
            Case(
                f"SpectralNormConv 3x3 {c}->{c} on {side}x{side}: train step",
                lambda: _train_step(
                    SpectralNormConv(c, (3, 3), norm_bound=0.95), images, (SPECTRAL_STATS,)
                ),
            ),
        ),
    ]


def _time_once(step) -> float:
    start = time.perf_counter()
    jax.block_until_ready(step())
    return time.perf_counter() - start


def median_times(steps: Sequence[Callable[[], jax.Array]], repeats: int, inner: int) -> list[float]:
    """Median seconds per call of each built step, in alternating rounds of ``inner``
    calls (so load on the machine hits them alike)."""
    for step in steps:  # compile and warm up
        jax.block_until_ready(step())
        jax.block_until_ready(step())
    rounds: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for i, step in enumerate(steps):
            rounds[i].append(sum(_time_once(step) for _ in range(inner)) / inner)
    return [statistics.median(r) for r in rounds]


def measure(plain: Case, variant: Case, repeats: int, inner: int) -> tuple[float, float, str]:
    """``median_times`` of both, and the ratio of the compiled programs' FLOPs where both
    report them."""
    steps = [plain.make_step(), variant.make_step()]
    flops = [getattr(step, "flops", None) for step in steps]
    flops_ratio = f"flops {flops[1] / flops[0]:.3f}" if None not in flops and flops[0] else ""
    t_plain, t_variant = median_times(steps, repeats, inner)
    return t_plain, t_variant, flops_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SIZES), default="small")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--inner", type=int, default=10)
    parser.add_argument("--nnx", action="store_true", help="NNX layers vs their Linen twins")
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, scale: {args.scale} {SIZES[args.scale]}")
    print(f"{'variant':<48} {'plain ms':>9} {'variant ms':>11} {'ratio':>7}")
    for plain, variant in (nnx_cases if args.nnx else cases)(SIZES[args.scale]):
        t_plain, t_variant, flops = measure(plain, variant, args.repeats, args.inner)
        print(
            f"{variant.name:<48} {1e3 * t_plain:>9.3f} {1e3 * t_variant:>11.3f} "
            f"{t_variant / t_plain:>7.2f}   (vs {plain.name}) {flops}"
        )


if __name__ == "__main__":
    main()

"""relbench's uncertainty layers against Edward2's own JAX layers, side by side.

    python -m benchmarks.peers.edward2_layers --edward2 /work/peers/edward2

Each case times one jitted training step of a layer, the same for both libraries: the
forward pass on the same inputs, a ``sum(out**2)`` loss, its gradient w.r.t. the
parameters and the layer's own state update (power-iteration vector, Laplace
precision), at B=256 examples of D=128 features and K=10 classes. The two steps run
in alternating rounds in one process and the medians are compared; ``ratio`` is
relbench / Edward2 (the goal is <= 0.8). Where both wrap a plain Flax layer
(``nn.Dense``, ``nn.Conv``), that layer's own train step runs in the same rounds:
``plain/Edward2`` is the ratio a wrapper whose normalization or ensembling cost nothing
would reach.

Cases (Edward2 class in parentheses):

* RFGP head, 1024 random features, exact (momentum-free) precision update, input
  layer norm (``RandomFeatureGaussianProcess``);
* spectral-normalized dense 128 -> 128, bound 6, one power iteration
  (``SpectralNormalization(nn.Dense)``);
* BatchEnsemble dense 128 -> 128, M = 4, the batch tiled M times (``DenseBatchEnsemble``);
* heteroscedastic softmax head, 3 factors, 100 MC samples (``MCSoftmaxDenseFA``);
* spectral-normalized 3x3 convolution on the conv operator, 32 -> 32 channels on 16x16,
  batch 64 (``SpectralNormalizationConv2D``): Edward2's only convolutional case.

What the two compute differs where the libraries differ, not by the benchmark's
choice (Edward2's input layer norm is given relbench's trainable scale and bias, so
that both GP heads compute the same map): Edward2's spectral normalization holds
``sigma`` constant in the gradient, where relbench differentiates through
``sigma = u^T W v`` [Miyato et al. 2018]; its heteroscedastic head draws one
diagonal noise per sample and example (broadcast over classes) where relbench draws one
per class, and averages softmaxes then takes a clipped log where relbench takes an
exact ``logsumexp`` of log-softmaxes. A second heteroscedastic row times Edward2's head
with its diagonal noise drawn per class (``per_class_diagonal_noise``), the paper's
model that relbench samples: the like-for-like comparison.

**Edward2 is not a dependency and is never committed.** Bring a local copy of the
public repository (https://github.com/google/edward2) and point ``--edward2`` (or
``EDWARD2_PATH``) at the folder that holds its ``edward2/`` package, e.g.

    git clone --depth 1 https://github.com/google/edward2 /work/peers/edward2

Only ``edward2/jax/nn`` is imported, needing nothing beyond flax and jax: the benchmark
registers empty ``edward2`` and ``edward2.jax`` packages so that their ``__init__``
modules, which import ``edward2.maps`` and with it ``grpc``, never run. Without the
copy the benchmark says so and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import pathlib
import sys
import types
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.layers import Case, median_times
from relbench.layers.batchensemble import BatchEnsembleDense
from relbench.layers.gaussian_process import LAPLACE, RandomFeatureGaussianProcess
from relbench.layers.heteroscedastic import HeteroscedasticHead
from relbench.layers.spectral_norm import SPECTRAL_STATS, SpectralNormConv, SpectralNormDense

B, D, K, M = 256, 128, 10, 4


def import_edward2_nn(root: pathlib.Path) -> types.ModuleType:
    """``edward2.jax.nn`` from the copy at ``root`` without running the package's
    ``__init__`` (which imports ``edward2.maps``, which needs ``grpc``)."""
    package = root / "edward2"
    if not (package / "jax" / "nn" / "__init__.py").exists():
        raise FileNotFoundError(package / "jax" / "nn")
    for name, path in (("edward2", package), ("edward2.jax", package / "jax")):
        stub = types.ModuleType(name)
        stub.__path__ = [str(path)]
        sys.modules[name] = stub
    return importlib.import_module("edward2.jax.nn")  # importable after the stubs only


def train_step(
    module: nn.Module,
    x: jax.Array,
    mutable: tuple[str, ...],
    call: dict,
    init_call: dict | None = None,
    rng_streams: tuple[str, ...] = (),
) -> Callable[[], jax.Array]:
    """A no-argument jitted step: ``sum(out**2)``, its gradient w.r.t. the parameters,
    and the state update of the ``mutable`` collections."""
    key = jax.random.key(0)
    rngs = {name: jax.random.fold_in(key, i) for i, name in enumerate(rng_streams)}
    variables = module.init(
        {"params": key, **rngs}, x, **(call if init_call is None else init_call)
    )
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}

    @jax.jit
    def step(params, rest, x):
        def loss(p):
            out, updates = module.apply(
                {"params": p, **rest}, x, **call, rngs=rngs, mutable=list(mutable)
            )
            out = out[0] if isinstance(out, tuple) else out
            return jnp.sum(out**2), updates

        (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, grads, updates

    return lambda: step(params, rest, x)


def per_class_diagonal_noise(ed_nn: types.ModuleType) -> type[nn.Module]:
    """Edward2's ``MCSoftmaxDenseFA`` drawing the paper's diagonal noise, one normal per
    class (Collier et al. 2021: ``Sigma(x) = V V^T + diag(d^2)``), as relbench does,
    instead of one per example broadcast over classes: the like-for-like peer."""

    class PerClassDiagonalNoise(ed_nn.MCSoftmaxDenseFA):
        def _compute_diagonal_noise_samples(self, diag_scale, num_samples):
            key = self.make_rng("diag_noise_samples")
            batch, classes = diag_scale.shape
            noise = jax.random.normal(key, shape=(batch, num_samples, classes))
            return jnp.expand_dims(diag_scale, 1) * noise

    return PerClassDiagonalNoise


def cases(ed_nn: types.ModuleType) -> list[tuple[Case, Case, Case | None]]:
    """(Edward2, relbench, plain) triples; ``plain`` is the bare Flax layer the two wrap
    (None for the heads, which are more than a wrapped layer)."""
    features = jax.random.normal(jax.random.key(1), (B, D))
    tiled = jax.random.normal(jax.random.key(2), (M * B, D))
    images = jax.random.normal(jax.random.key(3), (64, 16, 16, 32))
    gp = RandomFeatureGaussianProcess(K, num_features=1024, normalize_input=True)
    # Edward2's input layer norm with relbench's trainable scale and bias: the same map.
    ed_gp = ed_nn.RandomFeatureGaussianProcess(
        K,
        hidden_features=1024,
        normalize_input=True,
        norm_kwargs={"use_bias": True, "use_scale": True},
    )
    het = HeteroscedasticHead(K, num_factors=3, train_mc_samples=100)
    ed_het = ed_nn.MCSoftmaxDenseFA(K, num_factors=3, train_mc_samples=100, logits_only=True)
    ed_het_paper = per_class_diagonal_noise(ed_nn)(
        K, num_factors=3, train_mc_samples=100, logits_only=True
    )
    ed_het_rngs = ("diag_noise_samples", "standard_norm_noise_samples")
    relbench_het = Case(
        "heteroscedastic softmax, 3 factors, S=100",
        lambda: train_step(het, features, (), train, None, ("heteroscedastic",)),
    )
    train, training = {"train": True}, {"training": True}
    return [
        (
            Case(
                "Edward2 RandomFeatureGaussianProcess",
                lambda: train_step(ed_gp, features, ("laplace_covariance",), {}),
            ),
            Case(
                "RFGP head, F=1024, exact, input layer norm",
                lambda: train_step(gp, features, (LAPLACE,), train, {"train": False}),
            ),
            None,
        ),
        (
            Case(
                "Edward2 SpectralNormalization(Dense)",
                lambda: train_step(
                    ed_nn.SpectralNormalization(nn.Dense(D), norm_multiplier=6.0),
                    features,
                    ("spectral_stats",),
                    training,
                ),
            ),
            Case(
                "spectral-normalized dense, bound 6",
                lambda: train_step(
                    SpectralNormDense(D, norm_bound=6.0), features, (SPECTRAL_STATS,), train
                ),
            ),
            Case("nn.Dense", lambda: train_step(nn.Dense(D), features, (), {})),
        ),
        (
            Case(
                "Edward2 DenseBatchEnsemble",
                lambda: train_step(ed_nn.DenseBatchEnsemble(D, ens_size=M), tiled, (), {}),
            ),
            Case(
                f"BatchEnsemble dense, M={M}, batch tiled",
                lambda: train_step(BatchEnsembleDense(D, ensemble_size=M), tiled, (), {}),
            ),
            Case("nn.Dense on the tiled batch", lambda: train_step(nn.Dense(D), tiled, (), {})),
        ),
        (
            Case(
                "Edward2 MCSoftmaxDenseFA",
                lambda: train_step(ed_het, features, (), training, None, ed_het_rngs),
            ),
            relbench_het,
            None,
        ),
        (
            Case(
                "Edward2 MCSoftmaxDenseFA, per-class diagonal noise",
                lambda: train_step(ed_het_paper, features, (), training, None, ed_het_rngs),
            ),
            dataclasses.replace(relbench_het, name="  (against per-class diagonal noise)"),
            None,
        ),
        (
            Case(
                "Edward2 SpectralNormalizationConv2D",
                lambda: train_step(
                    ed_nn.SpectralNormalizationConv2D(nn.Conv(32, (3, 3)), norm_multiplier=6.0),
                    images,
                    ("spectral_stats",),
                    training,
                ),
            ),
            Case(
                "spectral-normalized conv 3x3, 32 ch, 16x16",
                lambda: train_step(
                    SpectralNormConv(32, (3, 3), norm_bound=6.0), images, (SPECTRAL_STATS,), train
                ),
            ),
            Case("nn.Conv", lambda: train_step(nn.Conv(32, (3, 3)), images, (), {})),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edward2", default=os.environ.get("EDWARD2_PATH", "/work/peers/edward2"))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--inner", type=int, default=20)
    args = parser.parse_args()
    try:
        ed_nn = import_edward2_nn(pathlib.Path(args.edward2))
    except (FileNotFoundError, ImportError) as error:
        print(
            f"edward2's jax/nn is not importable from {args.edward2} ({error}); bring a "
            "local copy as this benchmark's docstring says, and pass --edward2"
        )
        raise SystemExit(2) from None
    print(
        f"device: {jax.devices()[0].device_kind}; B={B}, D={D}, K={K}; "
        f"median of {args.repeats} alternating rounds of {args.inner} steps"
    )
    print(
        f"{'layer':<46} {'relbench us':>12} {'Edward2 us':>11} {'ratio':>7} "
        f"{'plain us':>9} {'plain/Edward2':>14}"
    )
    for ed_case, ours, plain in cases(ed_nn):
        built = [case.make_step() for case in (ed_case, ours, plain) if case]
        times = median_times(built, args.repeats, args.inner)
        t_ed, t_ours = times[:2]
        row = f"{ours.name:<46} {1e6 * t_ours:>12.0f} {1e6 * t_ed:>11.0f} {t_ours / t_ed:>7.2f}"
        if plain:
            row += f" {1e6 * times[2]:>9.0f} {times[2] / t_ed:>14.2f}"
        print(row)


if __name__ == "__main__":
    main()

"""A Linen model made of relbench's NNX layers through ``flax.nnx.bridge.ToLinen``.

    PYTHONPATH=. python examples/linen_model_with_nnx_layers.py

A Linen project keeps its modules, its ``init`` / ``apply`` and its optax loop, and takes
relbench's NNX layers as Linen submodules: ``bridge.ToLinen(nnx_class, args, kwargs)``.
Their non-parameter state comes back as the Linen collections of the same names as the
Linen layers' (``"spectral_stats"``, ``"laplace"``, ``"random_features"``: the NNX types are
registered under those names, ``relbench.layers.state_types``), so ``apply(...,
mutable=[...])`` updates them as it would the Linen layers'. The mode is a constructor
argument of the NNX layer (``deterministic``), as ``nnx.Dropout``'s.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.nnx import bridge

from relbench import data
from relbench import nnx as rnnx

MUTABLE = ["spectral_stats", "laplace"]


class LinenSNGP(nn.Module):
    """flatten -> (spectral-normalized NNX dense -> relu) x 2 -> NNX GP head."""

    num_classes: int
    in_features: int
    hidden: int = 64

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.reshape(x.shape[0], -1)  # [B, H, W, C] -> [B, D]
        widths = (self.in_features, self.hidden, self.hidden)
        for index, (width_in, width_out) in enumerate(zip(widths, widths[1:], strict=False)):
            dense = bridge.ToLinen(
                rnnx.SpectralNormDense,
                args=(width_in, width_out),
                kwargs={"norm_bound": 6.0, "deterministic": not train},
                name=f"dense_{index}",
            )
            x = nn.relu(dense(x))
        head = bridge.ToLinen(
            rnnx.RandomFeatureGaussianProcess,
            args=(self.hidden, self.num_classes),
            kwargs={
                "num_features": 128,
                "normalize_input": True,
                "kernel_scale": 8.0,
                "deterministic": not train,
            },
            name="head",
        )
        return head(x)


def train(steps: int = 200, batch_size: int = 64, seed: int = 0):
    """An ordinary Linen/optax loop; returns the model, its variables and the losses."""
    dataset = data.make("digits")
    train_set = dataset.train.read(np.arange(len(dataset.train)))
    model = LinenSNGP(dataset.num_classes, int(np.prod(dataset.input_shape)))
    variables = model.init(jax.random.key(seed), train_set["input"][:1], train=False)
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    tx = optax.adam(2e-3)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, state, opt_state, x, y):
        def loss_fn(params):
            (logits, _), updates = model.apply(
                {"params": params, **state}, x, train=True, mutable=MUTABLE
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        changes, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), {**state, **updates}, opt_state, loss

    rows = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        batch = rows.choice(len(dataset.train), batch_size, replace=False)
        params, state, opt_state, loss = step(
            params, state, opt_state, train_set["input"][batch], train_set["label"][batch]
        )
        losses.append(float(loss))
    return model, {"params": params, **state}, dataset, losses


def test_accuracy(model: LinenSNGP, variables, dataset) -> float:
    test = dataset.eval_sets["test"].source
    test = test.read(np.arange(len(test)))
    logits, extras = model.apply(variables, jnp.asarray(test["input"]), train=False)
    assert extras["variance"].shape == logits.shape  # the GP's predictive variance
    return float(np.mean(np.argmax(logits, -1) == test["label"]))


if __name__ == "__main__":
    model, variables, dataset, losses = train()
    print("collections:", sorted(variables))
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"test accuracy: {test_accuracy(model, variables, dataset):.4f}")

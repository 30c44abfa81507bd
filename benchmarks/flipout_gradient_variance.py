"""Gradient variance of Flipout relative to the reparameterization estimator.

    PYTHONPATH=. python benchmarks/flipout_gradient_variance.py

On a fixed regression problem (a variational dense layer, squared error), the
minibatch gradient w.r.t. the posterior mean and scale is drawn under 512 weight-noise
keys for each estimator; the script prints, per batch size, the ratio of their
variances (averaged over weights) measured side by side. Flipout decorrelates the
examples of a minibatch [1], so its variance should fall roughly like 1 / batch while
the reparameterization estimator's (one kernel sample per batch) levels off.

References:
  [1] Wen, Vicol, Ba, Tran, Grosse. Flipout: Efficient Pseudo-Independent Weight
      Perturbations on Mini-Batches. ICLR 2018. https://arxiv.org/abs/1803.04386
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from relbench.layers import variational as vl


def gradient_variance(estimator: str, batch_size: int, num_keys: int = 512) -> dict[str, float]:
    k_x, k_w, k_init, k_noise = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(k_x, (batch_size, 32))
    y = x @ jax.random.normal(k_w, (32, 8))
    layer = vl.VariationalDense(8, vl.VariationalSpec(estimator, stddev_init=0.3), use_bias=False)
    params = layer.init(k_init, x)["params"]

    def loss(params, key):
        out = layer.apply({"params": params}, x, rngs={"variational": key})
        return jnp.mean((out - y) ** 2)

    grads = jax.jit(jax.vmap(functools.partial(jax.grad(loss), params)))(
        jax.random.split(k_noise, num_keys)
    )
    return {name: float(g.var(0).mean()) for name, g in grads.items()}


def main() -> None:
    print("batch  var(reparam)/var(flipout): kernel_loc  kernel_raw_scale")
    for batch_size in (1, 16, 128, 1024):
        reparam = gradient_variance("reparameterization", batch_size)
        flip = gradient_variance("flipout", batch_size)
        ratios = [reparam[k] / flip[k] for k in ("kernel_loc", "kernel_raw_scale")]
        print(f"{batch_size:5d}  {ratios[0]:36.2f}  {ratios[1]:16.2f}")


if __name__ == "__main__":
    main()

"""Mean-field Gaussian variational layers: dense, conv and an LSTM cell.

Each kernel ``W`` has a factorized Gaussian posterior

    q(W) = prod_ij N(w_ij; mu_ij, sigma_ij^2),   sigma = softplus(rho),

with trainable ``mu`` (``kernel_loc``) and ``rho`` (``kernel_raw_scale``); biases are
point estimates. A layer computes its output with one weight perturbation
``Delta W = sigma * eps``, ``eps ~ N(0, I)``, drawn from the Flax RNG stream
``"variational"``, by one of two estimators:

* reparameterization [1]: one kernel ``W = mu + Delta W`` for the whole batch,
  ``y = x W + b``;
* Flipout [2]: every example n gets the pseudo-independent kernel
  ``W_n = mu + Delta W * (s_n r_n^T)`` with random signs ``s_n in {+-1}^in``,
  ``r_n in {+-1}^out``, computed without materializing ``W_n`` as

      y = x mu + ((x * s) Delta W) * r + b.

  Each ``W_n`` is distributed as ``q`` (``eps`` is symmetric), so the estimator is
  unbiased, and examples in a minibatch decorrelate, lowering gradient variance.

Both are affine in ``eps``, so the output averaged over ``eps`` (or over the pair
``eps, -eps``) is the output of the deterministic layer with kernel ``mu``; with
``deterministic=True`` a layer returns exactly that.

The ELBO needs ``KL(q(W) || p(W))``. Against a Gaussian prior ``N(m, s^2)`` it has the
closed form, per weight,

    KL = log(s / sigma) + (sigma^2 + (mu - m)^2) / (2 s^2) - 1/2;

against a scale-mixture prior [1] ``pi N(0, s1^2) + (1 - pi) N(0, s2^2)`` it has none,
and the layer uses the Monte Carlo estimate ``log q(W) - log p(W)`` at its sampled
kernel. Each layer sows its KL into the ``"losses"`` collection under the name
``"kl"`` (overwriting, so a layer called twice with its shared weights counts once);
the loss adds their sum divided by the number of training examples
(``relbench.methods.variational``).

The LSTM cell [3] samples one weight perturbation per *sequence*: ``initialize_carry``
draws the sequence's key from the ``"variational"`` stream and records the KL; the key
rides in the carry, so every time step uses the same weights whether the cell is
unrolled by ``nn.RNN`` / ``nn.scan`` or by a Python loop.

References:
  [1] Blundell, Cornebise, Kavukcuoglu, Wierstra. Weight Uncertainty in Neural
      Networks. ICML 2015. https://arxiv.org/abs/1505.05424
  [2] Wen, Vicol, Ba, Tran, Grosse. Flipout: Efficient Pseudo-Independent Weight
      Perturbations on Mini-Batches. ICLR 2018. https://arxiv.org/abs/1803.04386
  [3] Fortunato, Blundell, Vinyals. Bayesian Recurrent Neural Networks. 2017.
      https://arxiv.org/abs/1704.02798
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from relbench import ppl
from relbench.errors import UsageError
from relbench.ppl import divergences
from relbench.ppl.divergences import softplus_inverse
from relbench.ppl.priors import NormalPrior, WeightPrior, normal_posterior
from relbench.ppl.priors import ScaleMixturePrior as ScaleMixturePrior  # re-exported

Array = jax.Array
ApplyKernel = Callable[[Array, Array], Array]
Initializer = Callable[..., Array]

RNG_STREAM = "variational"
KL_COLLECTION = "losses"
ESTIMATORS = ("reparameterization", "flipout")


# ------------------------------------------------------------------ initializers


def raw_scale_init(stddev: float) -> Initializer:
    """Initializer ``(key, shape, dtype) -> rho`` giving every weight posterior stddev
    ``stddev`` (the key is unused: the spread starts equal)."""
    if stddev <= 0:
        raise UsageError(f"posterior stddev_init must be > 0, got {stddev}")

    def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        del key
        return jnp.full(shape, softplus_inverse(stddev), dtype)

    return init


def posterior_scale(raw_scale: Array) -> Array:
    """``sigma = softplus(rho)``."""
    return jax.nn.softplus(raw_scale)


posterior = normal_posterior  # q(W) = N(loc, scale^2)


# ----------------------------------------------------------------------- priors


class Prior(Protocol):
    def log_prob(self, weights: Array) -> Array: ...


def kl_divergence(prior: Prior, loc: Array, scale: Array, sample: Array | None) -> Array:
    """``KL(q || p)`` for ``q = N(loc, scale^2)``: closed form where registered, else
    the one-sample Monte Carlo estimate ``log q(sample) - log p(sample)``."""
    p = prior.distribution() if isinstance(prior, WeightPrior) else prior
    return divergences.kl_divergence(posterior(loc, scale), p, sample)


# ----------------------------------------------------------- pure estimator cores


def gaussian_perturbation(key: Array, scale: Array) -> Array:
    """``Delta W = scale * eps``, ``eps ~ N(0, I)``."""
    return scale * jax.random.normal(key, scale.shape, scale.dtype)


def reparameterization(
    apply_kernel: ApplyKernel, inputs: Array, loc: Array, perturbation: Array
) -> Array:
    """One sampled kernel ``loc + perturbation`` for every example."""
    return apply_kernel(inputs, loc + perturbation)


def flipout(
    apply_kernel: ApplyKernel,
    inputs: Array,
    loc: Array,
    perturbation: Array,
    sign_in: Array,
    sign_out: Array,
) -> Array:
    """Per-example kernels ``loc + perturbation * (s r^T)``: ``x loc + ((x s) dW) r``.

    ``apply_kernel`` must be linear in the kernel (matmul, convolution); ``sign_in``
    broadcasts against ``inputs`` and ``sign_out`` against the output.
    """
    return apply_kernel(inputs, loc) + apply_kernel(inputs * sign_in, perturbation) * sign_out


def matmul_kernel(inputs: Array, kernel: Array) -> Array:
    """The dense layer's linear map ``[..., D_in] x [D_in, D_out] -> [..., D_out]``."""
    return inputs @ kernel


def conv_kernel(strides: Sequence[int], padding: str | Sequence[tuple[int, int]]) -> ApplyKernel:
    """The conv layer's linear map, channels-last: ``[N, *spatial, C_in]`` with an
    ``[*window, C_in, C_out]`` kernel (the layouts of ``flax.linen.Conv``)."""

    def apply_kernel(inputs: Array, kernel: Array) -> Array:
        ndim = inputs.ndim
        spatial = tuple(range(1, ndim - 1))
        numbers = lax.ConvDimensionNumbers(
            lhs_spec=(0, ndim - 1, *spatial),
            rhs_spec=(ndim - 1, ndim - 2, *range(ndim - 2)),
            out_spec=(0, ndim - 1, *spatial),
        )
        return lax.conv_general_dilated(
            inputs, kernel, tuple(strides), padding, dimension_numbers=numbers
        )

    return apply_kernel


def rademacher(key: Array, shape: Sequence[int], dtype: Any) -> Array:
    """Independent random signs in ``{-1, +1}``."""
    return jax.random.rademacher(key, tuple(shape), dtype)


def estimate(
    estimator: str,
    apply_kernel: ApplyKernel,
    inputs: Array,
    loc: Array,
    perturbation: Array,
    key: Array,
    sign_shapes: tuple[Sequence[int], Sequence[int]],
) -> Array:
    """Runs the named estimator; Flipout draws its signs (shapes ``sign_shapes``) from
    ``key``."""
    if estimator == "reparameterization":
        return reparameterization(apply_kernel, inputs, loc, perturbation)
    if estimator == "flipout":
        key_in, key_out = jax.random.split(key)
        sign_in = rademacher(key_in, sign_shapes[0], inputs.dtype)
        sign_out = rademacher(key_out, sign_shapes[1], inputs.dtype)
        return flipout(apply_kernel, inputs, loc, perturbation, sign_in, sign_out)
    raise UsageError(f"unknown estimator '{estimator}'; choose one of: {', '.join(ESTIMATORS)}")


# ---------------------------------------------------------- Linen plumbing


@dataclasses.dataclass(frozen=True)
class VariationalSpec:
    """How a layer's kernel is variational: one record shared by dense, conv and LSTM.

    Attributes:
      estimator: ``"reparameterization"`` or ``"flipout"`` (the LSTM cell always
        reparameterizes, once per sequence).
      prior: the kernel prior (``NormalPrior`` or ``ScaleMixturePrior``).
      stddev_init: initial posterior stddev of every weight.
      kernel_init: initializer of the posterior mean.
      rng_stream: the Flax RNG stream the weight noise comes from.
    """

    estimator: str = "flipout"
    prior: Any = NormalPrior()
    stddev_init: float = 1e-3
    kernel_init: Initializer = nn.initializers.lecun_normal()
    rng_stream: str = RNG_STREAM


def _posterior(module: nn.Module, spec: VariationalSpec, shape: Sequence[int]):
    loc = module.param("kernel_loc", spec.kernel_init, tuple(shape), jnp.float32)
    raw = module.param(
        "kernel_raw_scale", raw_scale_init(spec.stddev_init), tuple(shape), jnp.float32
    )
    return loc, posterior_scale(raw)


def _weight_key(module: nn.Module, stream: str) -> Array:
    if not module.is_initializing() and not module.has_rng(stream):
        raise UsageError(
            f"{type(module).__name__} samples its weights from the '{stream}' RNG stream; "
            f"pass rngs={{'{stream}': key}} to apply (or use deterministic=True)"
        )
    return module.make_rng(stream)


def weight_name(module: nn.Module) -> str:
    """``"Dense_0/kernel"``: the kernel's name in tapes, by the layer's module path."""
    return "/".join((*module.path, "kernel"))


def _record_kl(module: nn.Module, prior: Prior, loc: Array, scale: Array, sample: Array) -> None:
    if module.is_initializing():
        return  # the KL is a training signal, not state: keep it out of the variables
    # The sampled kernel is a ppl random variable named by the layer's path, so that
    # `with ppl.tape() as rvs: model.apply(...)` records every layer's weights by name.
    kernel = ppl.Normal(loc, scale, name=weight_name(module), value=sample)
    module.sow(
        KL_COLLECTION,
        "kl",
        kl_divergence(prior, loc, scale, kernel.value),
        init_fn=lambda: jnp.zeros(()),
        reduce_fn=lambda _, new: new,  # shared weights: their KL counts once
    )


def _variational_linear(
    module: nn.Module,
    apply_kernel: ApplyKernel,
    inputs: Array,
    kernel_shape: Sequence[int],
    sign_shapes: tuple[Sequence[int], Sequence[int]],
    deterministic: bool,
) -> Array:
    """The body of a variational dense/conv layer: sample, record the KL, estimate,
    add the bias."""
    spec = module.variational
    loc, scale = _posterior(module, spec, kernel_shape)
    if deterministic:
        y = apply_kernel(inputs, loc)
    else:
        noise_key, sign_key = jax.random.split(_weight_key(module, spec.rng_stream))
        perturbation = gaussian_perturbation(noise_key, scale)
        _record_kl(module, spec.prior, loc, scale, loc + perturbation)
        y = estimate(spec.estimator, apply_kernel, inputs, loc, perturbation, sign_key, sign_shapes)
    if module.use_bias:
        y = y + module.param("bias", module.bias_init, (module.features,), jnp.float32)
    return y


class VariationalDense(nn.Module):
    """A dense layer with a mean-field Gaussian kernel posterior (see module docstring).

    Attributes:
      features: output width.
      variational: the estimator, prior and posterior initialization.
      use_bias: add a (point-estimate) bias.
    """

    features: int
    variational: VariationalSpec = VariationalSpec()
    use_bias: bool = True
    bias_init: Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, inputs: Array, deterministic: bool = False) -> Array:
        """``[..., D_in] -> [..., features]``; ``deterministic``: use the posterior mean."""
        out_shape = inputs.shape[:-1] + (self.features,)
        kernel_shape = (inputs.shape[-1], self.features)
        return _variational_linear(
            self, matmul_kernel, inputs, kernel_shape, (inputs.shape, out_shape), deterministic
        )


class VariationalConv(nn.Module):
    """A convolution (channels-last, like ``flax.linen.Conv``) with a mean-field
    Gaussian kernel posterior. Flipout signs are drawn per example and channel.

    Attributes:
      features: output channels.
      kernel_size: the window, e.g. ``(3, 3)``.
      strides: an int or one per spatial dimension.
      padding: ``"SAME"``, ``"VALID"`` or ``[(low, high), ...]``.
      variational, use_bias, bias_init: as in ``VariationalDense``.
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: int | Sequence[int] = 1
    padding: str | Sequence[tuple[int, int]] = "SAME"
    variational: VariationalSpec = VariationalSpec()
    use_bias: bool = True
    bias_init: Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, inputs: Array, deterministic: bool = False) -> Array:
        """``[N, *spatial, C_in] -> [N, *spatial', features]``."""
        window = tuple(self.kernel_size)
        strides = (self.strides,) * len(window) if isinstance(self.strides, int) else self.strides
        padding = self.padding if isinstance(self.padding, str) else tuple(self.padding)
        ones = (1,) * len(window)
        batch, channels = inputs.shape[0], inputs.shape[-1]
        return _variational_linear(
            self,
            conv_kernel(strides, padding),
            inputs,
            window + (channels, self.features),
            ((batch, *ones, channels), (batch, *ones, self.features)),  # per example, channel
            deterministic,
        )


class DenseReparameterization(VariationalDense):
    """``VariationalDense`` with the reparameterization estimator."""

    variational: VariationalSpec = VariationalSpec(estimator="reparameterization")


class DenseFlipout(VariationalDense):
    """``VariationalDense`` with the Flipout estimator."""

    variational: VariationalSpec = VariationalSpec(estimator="flipout")


class ConvReparameterization(VariationalConv):
    """``VariationalConv`` with the reparameterization estimator."""

    variational: VariationalSpec = VariationalSpec(estimator="reparameterization")


class ConvFlipout(VariationalConv):
    """``VariationalConv`` with the Flipout estimator."""

    variational: VariationalSpec = VariationalSpec(estimator="flipout")


# --------------------------------------------------------------------- LSTM cell


def lstm_step(
    carry: tuple[Array, Array],
    inputs: Array,
    kernel: Array,
    bias: Array,
    gate_fn: Callable[[Array], Array] = jax.nn.sigmoid,
    activation_fn: Callable[[Array], Array] = jnp.tanh,
) -> tuple[Array, Array]:
    """One LSTM step with a fused kernel ``[D_in + H, 4H]`` (gates i, f, g, o).

    ``c' = f * c + i * g``, ``h' = o * activation(c')``; returns ``(c', h')``.
    """
    c, h = carry
    z = jnp.concatenate([inputs, h], axis=-1) @ kernel + bias  # [B, D_in + H] -> [B, 4H]
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = gate_fn(f) * c + gate_fn(i) * activation_fn(g)
    return c, gate_fn(o) * activation_fn(c)


class LSTMCellReparameterization(nn.RNNCellBase):
    """A Bayesian LSTM cell: mean-field Gaussian kernel, one weight sample per sequence.

    Follows ``flax.linen``'s cell interface, so ``nn.RNN(cell)`` (with its default
    settings, ``seq_lengths`` included) or a Python loop unrolls it. The carry is
    ``(c, h, keys)``: ``initialize_carry`` draws one key from the ``"variational"``
    stream (copied per example, ``keys [*batch]``) and sows the KL of the weights it
    selects; every step rebuilds the same kernel ``loc + scale * N(0, I; key)``.

    Attributes:
      features: hidden size H.
      variational: prior, posterior initialization and RNG stream (its estimator is
        not used: the kernel is reparameterized once per sequence).
      bias_init: initializer of the (point-estimate) bias.
      deterministic: use the posterior-mean kernel (no RNG needed).
      gate_fn, activation_fn: the gate and cell nonlinearities.
    """

    features: int
    variational: VariationalSpec = VariationalSpec(estimator="reparameterization")
    bias_init: Initializer = nn.initializers.zeros_init()
    deterministic: bool = False
    gate_fn: Callable[[Array], Array] = jax.nn.sigmoid
    activation_fn: Callable[[Array], Array] = jnp.tanh

    @nn.compact
    def __call__(self, carry, inputs: Array):
        """``((c, h, keys), x [B, D_in]) -> ((c', h', keys), h' [B, H])``."""
        c, h, keys = carry
        shape = (inputs.shape[-1] + self.features, 4 * self.features)
        loc, scale = _posterior(self, self.variational, shape)
        bias = self.param("bias", self.bias_init, (4 * self.features,), jnp.float32)
        if self.deterministic:
            kernel = loc
        else:
            key = keys.reshape(-1)[0]  # one key per batch of sequences, copied per example
            kernel = loc + gaussian_perturbation(key, scale)
        c, h = lstm_step(
            (c, h), inputs, kernel, bias, gate_fn=self.gate_fn, activation_fn=self.activation_fn
        )
        return (c, h, keys), h

    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]):
        """Zero state for inputs ``[*batch, D_in]``, and this sequence's weight key.

        ``rng`` is unused: sampled weights come from the ``"variational"`` stream, so
        ``nn.RNN``'s fixed default key is harmless.
        """
        batch = input_shape[:-1]
        zeros = jnp.zeros(batch + (self.features,), jnp.float32)
        if self.deterministic:  # nothing is sampled: the key slot holds zeros
            return zeros, zeros, jnp.zeros(batch, jnp.uint32)
        key = _weight_key(self, self.variational.rng_stream)
        params = self.variables.get("params", {})
        if "kernel_loc" in params:  # absent only while the cell is being initialized
            loc = params["kernel_loc"]
            scale = posterior_scale(params["kernel_raw_scale"])
            sample = loc + gaussian_perturbation(key, scale)
            _record_kl(self, self.variational.prior, loc, scale, sample)
        # Every carry leaf has the batch dimensions (nn.RNN selects final carries per
        # example by them), so the one key is copied per example: [] -> [*batch].
        return zeros, zeros, jnp.broadcast_to(key, batch)

    @property
    def num_feature_axes(self) -> int:
        return 1

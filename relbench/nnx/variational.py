"""NNX mean-field Gaussian variational dense, conv and LSTM cell over
``relbench.layers.variational``.

Parameters ``kernel_loc`` (``mu``), ``kernel_raw_scale`` (``rho``, ``sigma =
softplus(rho)``) and ``bias``; one weight perturbation per call (per sequence for the
LSTM cell) from the ``variational`` stream, through that module's
``gaussian_perturbation``, ``estimate`` (reparameterization or Flipout),
``kl_divergence`` and ``lstm_step`` (see its docstring for the math and references).
The KL of the sampled call is kept in a ``VariationalKL`` variable (``kl``).

The layers sample in training *and* evaluation (``model.eval()`` does not stop them:
test-time samples are the method); ``use_posterior_mean=True`` uses the kernel ``mu``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from relbench.layers import variational as core
from relbench.layers.state_types import VariationalKL
from relbench.nnx.initializers import ZEROS
from relbench.nnx.rngs import RngsArg, draw_key, fork_stream

Array = jax.Array
Initializer = Callable[..., Array]


class _Variational(nnx.Module):
    """The posterior parameters, the KL variable and the stream, shared by every layer."""

    def _posterior(
        self,
        spec: core.VariationalSpec,
        kernel_shape,
        use_bias,
        bias_shape,
        bias_init,
        use_posterior_mean,
        rngs,
    ):
        self.spec, self.use_posterior_mean = spec, use_posterior_mean
        self.kernel_loc = nnx.Param(spec.kernel_init(rngs.params(), kernel_shape, jnp.float32))
        raw_init = core.raw_scale_init(spec.stddev_init)
        self.kernel_raw_scale = nnx.Param(raw_init(rngs.params(), kernel_shape, jnp.float32))
        self.bias = (
            nnx.Param(bias_init(rngs.params(), bias_shape, jnp.float32)) if use_bias else None
        )
        self.kl = VariationalKL(jnp.zeros(()))
        self.rngs = fork_stream(rngs, spec.rng_stream)

    def _loc_scale(self) -> tuple[Array, Array]:
        return self.kernel_loc[...], core.posterior_scale(self.kernel_raw_scale[...])

    def _record_kl(self, loc: Array, scale: Array, sample: Array) -> None:
        self.kl[...] = core.kl_divergence(self.spec.prior, loc, scale, sample)

    def _linear(self, apply_kernel, inputs, sign_shapes, rngs: RngsArg) -> Array:
        """Sample, record the KL, estimate, add the bias (``_variational_linear``)."""
        loc, scale = self._loc_scale()
        if self.use_posterior_mean:
            y = apply_kernel(inputs, loc)
        else:
            key = draw_key(self, rngs, self.spec.rng_stream)
            noise_key, sign_key = jax.random.split(key)
            perturbation = core.gaussian_perturbation(noise_key, scale)
            self._record_kl(loc, scale, loc + perturbation)
            y = core.estimate(
                self.spec.estimator,
                apply_kernel,
                inputs,
                loc,
                perturbation,
                sign_key,
                sign_shapes,
            )
        return y if self.bias is None else y + self.bias[...]


class VariationalDense(_Variational):
    """A dense layer with a mean-field Gaussian kernel posterior."""

    default_spec = core.VariationalSpec()

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        variational: core.VariationalSpec | None = None,
        use_bias: bool = True,
        bias_init: Initializer = ZEROS,
        use_posterior_mean: bool = False,
        rngs: nnx.Rngs,
    ):
        self.out_features = out_features
        spec = self.default_spec if variational is None else variational
        self._posterior(
            spec,
            (in_features, out_features),
            use_bias,
            (out_features,),
            bias_init,
            use_posterior_mean,
            rngs,
        )

    def __call__(self, inputs: Array, *, rngs: RngsArg = None) -> Array:
        out_shape = inputs.shape[:-1] + (self.out_features,)
        return self._linear(core.matmul_kernel, inputs, (inputs.shape, out_shape), rngs)


class VariationalConv(_Variational):
    """A convolution (channels-last) with a mean-field Gaussian kernel posterior;
    Flipout signs per example and channel."""

    default_spec = core.VariationalSpec()

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Sequence[int] = (3, 3),
        strides: int | Sequence[int] = 1,
        *,
        padding: str | Sequence[tuple[int, int]] = "SAME",
        variational: core.VariationalSpec | None = None,
        use_bias: bool = True,
        bias_init: Initializer = ZEROS,
        use_posterior_mean: bool = False,
        rngs: nnx.Rngs,
    ):
        window = tuple(kernel_size)
        strides = (strides,) * len(window) if isinstance(strides, int) else tuple(strides)
        padding = padding if isinstance(padding, str) else tuple(padding)
        self.apply_kernel = core.conv_kernel(strides, padding)
        self.out_features, self.rank = out_features, len(window)
        spec = self.default_spec if variational is None else variational
        self._posterior(
            spec,
            window + (in_features, out_features),
            use_bias,
            (out_features,),
            bias_init,
            use_posterior_mean,
            rngs,
        )

    def __call__(self, inputs: Array, *, rngs: RngsArg = None) -> Array:
        ones = (1,) * self.rank
        batch, channels = inputs.shape[0], inputs.shape[-1]
        # Flipout signs per example and channel.
        signs = ((batch, *ones, channels), (batch, *ones, self.out_features))
        return self._linear(self.apply_kernel, inputs, signs, rngs)


class DenseReparameterization(VariationalDense):
    """``VariationalDense`` with the reparameterization estimator."""

    default_spec = core.VariationalSpec(estimator="reparameterization")


class DenseFlipout(VariationalDense):
    """``VariationalDense`` with the Flipout estimator."""

    default_spec = core.VariationalSpec(estimator="flipout")


class ConvReparameterization(VariationalConv):
    """``VariationalConv`` with the reparameterization estimator."""

    default_spec = core.VariationalSpec(estimator="reparameterization")


class ConvFlipout(VariationalConv):
    """``VariationalConv`` with the Flipout estimator."""

    default_spec = core.VariationalSpec(estimator="flipout")


class LSTMCellReparameterization(_Variational):
    """A Bayesian LSTM cell: one weight sample per sequence.

    ``initialize_carry(input_shape, rngs=None)`` draws the sequence's key from the
    ``variational`` stream and records the KL of the weights it selects; the key rides
    in the carry ``(c, h, keys)``, so every step rebuilds the same kernel. A Python loop
    (or ``nnx.scan``) unrolls ``cell(carry, x) -> (carry, h)``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        variational: core.VariationalSpec | None = None,
        bias_init: Initializer = ZEROS,
        use_posterior_mean: bool = False,
        gate_fn: Callable[[Array], Array] = jax.nn.sigmoid,
        activation_fn: Callable[[Array], Array] = jnp.tanh,
        rngs: nnx.Rngs,
    ):
        self.hidden_features = hidden_features
        self.gate_fn, self.activation_fn = gate_fn, activation_fn
        spec = (
            core.VariationalSpec(estimator="reparameterization")
            if variational is None
            else variational
        )
        shape = (in_features + hidden_features, 4 * hidden_features)
        self._posterior(
            spec, shape, True, (4 * hidden_features,), bias_init, use_posterior_mean, rngs
        )

    def initialize_carry(self, input_shape: Sequence[int], rngs: RngsArg = None):
        """Zero state for inputs ``[*batch, D_in]``, and this sequence's weight key."""
        batch = tuple(input_shape[:-1])
        zeros = jnp.zeros(batch + (self.hidden_features,), jnp.float32)
        if self.use_posterior_mean:  # nothing is sampled: the key slot holds zeros
            return zeros, zeros, jnp.zeros(batch, jnp.uint32)
        key = draw_key(self, rngs, self.spec.rng_stream)
        loc, scale = self._loc_scale()
        self._record_kl(loc, scale, loc + core.gaussian_perturbation(key, scale))
        return zeros, zeros, jnp.broadcast_to(key, batch)  # [] -> [*batch]

    def __call__(self, carry, inputs: Array):
        """``((c, h, keys), x [B, D_in]) -> ((c', h', keys), h' [B, H])``."""
        c, h, keys = carry
        loc, scale = self._loc_scale()
        kernel = loc
        if not self.use_posterior_mean:
            key = keys.reshape(-1)[0]  # one key per batch of sequences, copied per example
            kernel = loc + core.gaussian_perturbation(key, scale)
        c, h = core.lstm_step(
            (c, h),
            inputs,
            kernel,
            self.bias[...],
            gate_fn=self.gate_fn,
            activation_fn=self.activation_fn,
        )
        return (c, h, keys), h

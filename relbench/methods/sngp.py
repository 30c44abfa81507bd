"""SNGP [1]: spectral-normalized hidden layers and a random-feature GP output layer.

The method changes three layer types of any model: every hidden ``dense`` and ``conv``
layer is spectral-normalized with a soft bound (``layers.spectral_norm``), and the
``head`` is a random-feature Gaussian process with a Laplace posterior covariance
(``layers.gaussian_process``). Training is maximum likelihood (softmax cross-entropy
of the posterior-mean logits) while the layers update their non-parameter state: the
power-iteration vectors (``"spectral_stats"``) and the GP precision (``"laplace"``),
accumulated over the global batch. With the exact precision update, ``on_epoch_start``
resets the precision to ``ridge * I`` so the final one covers exactly the last epoch.

At test time the model runs once; ``predict_fn`` returns the mean-field logits

    logits / sqrt(1 + mean_field_factor * variance)       [M, B, K]

and the GP's predictive variance of each logit as ``extras["variance"]`` ([M, B, K]),
an uncertainty score that grows with the distance from the training data.

References:
  [1] Liu, Lin, Padhy, Tran, Bedrax-Weiss, Lakshminarayanan. Simple and Principled
      Uncertainty Estimation with Deterministic Deep Learning via Distance Awareness.
      NeurIPS 2020. https://arxiv.org/abs/2006.10108
"""

from __future__ import annotations

import functools

import jax

from relbench.errors import UsageError
from relbench.layers.gaussian_process import (
    LAPLACE,
    PROBIT_MEAN_FIELD_FACTOR,
    RandomFeatureGaussianProcess,
    mean_field_logits,
    reset_precision,
)
from relbench.layers.spectral_norm import SPECTRAL_STATS, SpectralNormConv, SpectralNormDense
from relbench.methods.method import Method, cross_entropy_loss

PRECISION_UPDATES = ("exact", "momentum")


def make(
    norm_bound: float = 0.95,
    num_power_iterations: int = 1,
    num_random_features: int = 1024,
    kernel_scale: float = 1.0,
    orthogonal_features: bool = False,
    normalize_input: bool = False,
    ridge: float = 1.0,
    precision_update: str = "exact",
    momentum: float = 0.999,
    likelihood: str = "gaussian",
    mean_field_factor: float = PROBIT_MEAN_FIELD_FACTOR,
    label_smoothing: float = 0.0,
) -> Method:
    """The SNGP method.

    Args:
      norm_bound: the bound ``c`` on each hidden layer's spectral norm.
      num_power_iterations: power-iteration steps per training step.
      num_random_features: F, the GP's random Fourier features.
      kernel_scale: the RBF length scale of the GP kernel.
      orthogonal_features: orthogonal random features instead of i.i.d. Gaussian ones.
      normalize_input: layer-normalize the GP's input features.
      ridge: the GP precision starts at ``ridge * I``.
      precision_update: ``"exact"`` (sum over the epoch, reset at each epoch start) or
        ``"momentum"`` (moving average with ``momentum``).
      momentum: the moving-average factor of the ``"momentum"`` update.
      likelihood: ``"gaussian"`` (one precision shared by classes) or ``"softmax"``
        (one Laplace precision per class).
      mean_field_factor: ``lambda`` of the mean-field logits; 0 disables the adjustment.
      label_smoothing: mass moved from the label to the uniform distribution.
    """
    if precision_update not in PRECISION_UPDATES:
        raise UsageError(
            f"unknown sngp precision_update '{precision_update}'; choose exact or momentum"
        )
    if mean_field_factor < 0:
        raise UsageError(f"sngp mean_field_factor must be >= 0, got {mean_field_factor}")
    exact = precision_update == "exact"
    spectral = {"norm_bound": norm_bound, "num_iterations": num_power_iterations}
    head = functools.partial(
        RandomFeatureGaussianProcess,
        num_features=num_random_features,
        kernel_scale=kernel_scale,
        orthogonal_features=orthogonal_features,
        normalize_input=normalize_input,
        ridge=ridge,
        momentum=None if exact else momentum,
        likelihood=likelihood,
    )
    # Fail on a bad head setting now, not at the first trace.
    head(num_classes=1)._check()

    def predict_fn(apply_fn, variables, inputs, key):
        del key  # one deterministic pass: the GP's uncertainty is analytic.
        logits, extras = apply_fn(variables, inputs, train=False)
        return mean_field_logits(logits, extras["variance"], mean_field_factor), extras

    def on_epoch_start(state):
        precisions = jax.tree.map(lambda p: reset_precision(p, ridge), state.collections[LAPLACE])
        return state.replace(collections={**state.collections, LAPLACE: precisions})

    mutable = ("batch_stats", SPECTRAL_STATS, LAPLACE)
    return Method(
        model_kwargs={
            "dense": functools.partial(SpectralNormDense, **spectral),
            "conv": functools.partial(SpectralNormConv, **spectral),
            "head": head,
        },
        loss_fn=cross_entropy_loss(mutable, label_smoothing),
        predict_fn=predict_fn,
        mutable=mutable,
        rng_streams=("dropout",),
        on_epoch_start=on_epoch_start if exact else None,
    )

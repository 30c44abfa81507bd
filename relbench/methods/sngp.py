"""SNGP [1]: spectral-normalized hidden layers and a random-feature GP output layer.

The method changes three layer types of any model: every hidden ``dense`` and ``conv``
layer is spectral-normalized with a soft bound (``layers.spectral_norm``), and the
``head`` is a random-feature Gaussian process with a Laplace posterior covariance
(``layers.gaussian_process``). Training is maximum likelihood of the posterior-mean
outputs while the layers update their non-parameter state: the power-iteration vectors
(``"spectral_stats"``) and the GP precision (``"laplace"``), accumulated over the
global batch. With the exact precision update, ``on_epoch_start`` resets the precision
to ``ridge * I`` so the final one covers exactly the last epoch.

For classes (categorical or Bernoulli likelihood) the model runs once at test time and
``predict_fn`` returns the mean-field logits

    logits / sqrt(1 + mean_field_factor * variance)       [M, B, K]

and the GP's predictive variance of each logit as ``extras["variance"]`` ([M, B, K]),
an uncertainty score that grows with the distance from the training data. For
regression (Gaussian likelihood) the GP gives the mean of a Gaussian head and the
predictive variance is the noise variance plus the GP's variance of the mean
(``layers.gaussian``), so it also grows away from the data; a per-class precision is
not defined there (its weights come from the Hessian of a cross-entropy).

References:
  [1] Liu, Lin, Padhy, Tran, Bedrax-Weiss, Lakshminarayanan. Simple and Principled
      Uncertainty Estimation with Deterministic Deep Learning via Distance Awareness.
      NeurIPS 2020. https://arxiv.org/abs/2006.10108
"""

from __future__ import annotations

import dataclasses
import functools

import jax

from relbench.errors import UsageError
from relbench.layers.gaussian_process import (
    LAPLACE,
    PRECISIONS,
    PROBIT_MEAN_FIELD_FACTOR,
    RandomFeatureGaussianProcess,
    mean_field_logits,
    reset_precision,
)
from relbench.layers.spectral_norm import SPECTRAL_STATS, SpectralNormConv, SpectralNormDense
from relbench.methods.likelihoods import CATEGORICAL, Bernoulli, Gaussian, Likelihood
from relbench.methods.method import Method, likelihood_loss, single_pass_predict

PRECISION_UPDATES = ("exact", "momentum")


def make(
    likelihood: Likelihood = CATEGORICAL,
    norm_bound: float = 0.95,
    num_power_iterations: int = 1,
    num_random_features: int = 1024,
    kernel_scale: float = 1.0,
    orthogonal_features: bool = False,
    normalize_input: bool = False,
    ridge: float = 1.0,
    precision: str = "shared",
    precision_update: str = "exact",
    momentum: float = 0.999,
    mean_field_factor: float = PROBIT_MEAN_FIELD_FACTOR,
    label_smoothing: float = 0.0,
) -> Method:
    """The SNGP method.

    Args:
      likelihood: the dataset's likelihood (given by the loop).
      norm_bound: the bound ``c`` on each hidden layer's spectral norm.
      num_power_iterations: power-iteration steps per training step.
      num_random_features: F, the GP's random Fourier features.
      kernel_scale: the RBF length scale of the GP kernel.
      orthogonal_features: orthogonal random features instead of i.i.d. Gaussian ones.
      normalize_input: layer-normalize the GP's input features.
      ridge: the GP precision starts at ``ridge * I``.
      precision: ``"shared"`` (one precision for every class) or ``"per_class"`` (one
        Laplace precision per class; classes only).
      precision_update: ``"exact"`` (sum over the epoch, reset at each epoch start) or
        ``"momentum"`` (moving average with ``momentum``).
      momentum: the moving-average factor of the ``"momentum"`` update.
      mean_field_factor: ``lambda`` of the mean-field logits; 0 disables the adjustment
        (classes only).
      label_smoothing: mass moved from the label to the uniform distribution.
    """
    if precision_update not in PRECISION_UPDATES:
        raise UsageError(
            f"unknown sngp precision_update '{precision_update}'; choose exact or momentum"
        )
    if mean_field_factor < 0:
        raise UsageError(f"sngp mean_field_factor must be >= 0, got {mean_field_factor}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown sngp precision '{precision}'; choose shared or per_class")
    regression = isinstance(likelihood, Gaussian)
    if regression and precision == "per_class":
        raise UsageError(
            "sngp precision='per_class' weighs the GP precision by the Hessian of a "
            "cross-entropy, which a regression dataset's gaussian likelihood has not; "
            "set precision='shared'"
        )
    likelihood = likelihood.smoothed(label_smoothing)
    exact = precision_update == "exact"
    spectral = {"norm_bound": norm_bound, "num_iterations": num_power_iterations}
    gp = functools.partial(
        RandomFeatureGaussianProcess,
        num_features=num_random_features,
        kernel_scale=kernel_scale,
        orthogonal_features=orthogonal_features,
        normalize_input=normalize_input,
        ridge=ridge,
        momentum=None if exact else momentum,
        precision=precision,
        link="sigmoid" if isinstance(likelihood, Bernoulli) else "softmax",
    )
    # Fail on a bad head setting now, not at the first trace.
    gp(num_classes=1)._check()

    def layers(base):
        return dataclasses.replace(
            base,
            dense=functools.partial(SpectralNormDense, **spectral),
            conv=functools.partial(SpectralNormConv, **spectral),
            head=likelihood.head(gp, base.dense),
        )

    def mean_field_predict(apply_fn, state, inputs, key):
        del key  # one deterministic pass: the GP's uncertainty is analytic.
        logits, extras = apply_fn(state.variables, inputs, train=False)
        return mean_field_logits(logits, extras["variance"], mean_field_factor), extras

    def on_epoch_start(state):
        precisions = jax.tree.map(lambda p: reset_precision(p, ridge), state.collections[LAPLACE])
        return state.replace(collections={**state.collections, LAPLACE: precisions})

    mutable = ("batch_stats", SPECTRAL_STATS, LAPLACE)
    return Method(
        layers=layers,
        loss_fn=likelihood_loss(likelihood, mutable),
        predict_fn=single_pass_predict if regression else mean_field_predict,
        mutable=mutable,
        on_epoch_start=on_epoch_start if exact else None,
    )

"""Heteroscedastic classification [1]: input-dependent, correlated noise on the logits.

The model's head becomes ``relbench.layers.heteroscedastic.HeteroscedasticHead``; its
logits are the log of Monte Carlo-averaged link probabilities, so the loss is the
ordinary cross-entropy of those logits (softmax link, a categorical likelihood) or the
per-class sigmoid cross-entropy (sigmoid link, multi-label data) — the paper's MC
estimate of the marginal likelihood. Logit noise is defined for classes only: on
regression data every method's Gaussian head is already heteroscedastic.
Evaluation runs one pass whose noise is drawn from the ``"heteroscedastic"`` stream.

Other methods compose with it by building their layer types with ``head_type``: e.g.
heteroscedastic BatchEnsemble sets ``dense`` and ``ensemble_size`` for the body and
``head=head_type(loc=partial(DenseHead, dense=BEDense), dense=BEDense)``; HetSNGP keeps
SNGP's spectral-normalized ``dense``/``conv``, its ``"laplace"`` mutable collection and
epoch hook, and sets ``head=head_type(loc=partial(RandomFeatureGaussianProcess, ...),
loc_variance="variance")`` (tested in tests/layers/test_heteroscedastic.py).

References:
  [1] Collier, Mustafa, Kokiopoulou, Jenatton, Berent. Correlated Input-Dependent
      Label Noise in Large-Scale Image Classification. CVPR 2021.
      https://arxiv.org/abs/2105.10305
"""

from __future__ import annotations

import dataclasses
import functools

from relbench.errors import UsageError
from relbench.layers.heteroscedastic import HeteroscedasticHead
from relbench.methods.likelihoods import CATEGORICAL, Bernoulli, Likelihood
from relbench.methods.method import Method, dense_head, likelihood_loss, rng_dict

STREAM = "heteroscedastic"


def head_type(**fields) -> functools.partial:
    """The ``HeteroscedasticHead`` type with ``fields`` set (a model's ``layers.head``)."""
    return functools.partial(HeteroscedasticHead, rng_stream=STREAM, **fields)


def predict(apply_fn, state, inputs, key):
    """One evaluation pass; its logit noise is drawn from ``key``."""
    return apply_fn(state.variables, inputs, train=False, rngs=rng_dict(key, (STREAM,)))


def make(
    likelihood: Likelihood = CATEGORICAL,
    num_factors: int = 10,
    parameter_efficient: bool = False,
    temperature: float = 1.0,
    train_mc_samples: int = 100,
    test_mc_samples: int = 1000,
    label_smoothing: float = 0.0,
) -> Method:
    """Args: likelihood: the dataset's likelihood (given by the loop): categorical takes
    the softmax link, Bernoulli (multi-label) the sigmoid link; the other arguments are
    ``HeteroscedasticHead``'s (num_factors, parameter_efficient, temperature,
    train_mc_samples, test_mc_samples) and label_smoothing as in ``deterministic``."""
    if num_factors < 0 or temperature <= 0 or min(train_mc_samples, test_mc_samples) < 1:
        raise UsageError(
            "heteroscedastic needs num_factors >= 0, temperature > 0 and at least one MC "
            f"sample; got num_factors={num_factors}, temperature={temperature}, "
            f"train_mc_samples={train_mc_samples}, test_mc_samples={test_mc_samples}"
        )
    likelihood = likelihood.smoothed(label_smoothing)

    def layers(base):
        head = head_type(
            link="sigmoid" if isinstance(likelihood, Bernoulli) else "softmax",
            num_factors=num_factors,
            parameter_efficient=parameter_efficient,
            temperature=temperature,
            train_mc_samples=train_mc_samples,
            test_mc_samples=test_mc_samples,
            loc=dense_head(likelihood, base.dense),
            dense=base.dense,
        )
        return dataclasses.replace(base, head=head)

    return Method(
        layers=layers,
        loss_fn=likelihood_loss(likelihood, ("batch_stats",)),
        predict_fn=predict,
        rng_streams=("dropout", STREAM),
    )

"""BatchEnsemble [1]: M members sharing slow weights, each with rank-1 fast weights.

Every dense and conv layer of the model becomes a BatchEnsemble layer
(``layers.batchensemble``), every batch norm a per-member one, and the head the
likelihood's head made of BatchEnsemble dense layers. The members' outputs
``[M, B, K]`` are the ensemble. Weight decay applies to the shared kernels only.

Batch layout in training (``batch_layout``):

* ``"tile"`` (default, [1]): every member sees the whole batch, ``M * B`` rows; the
  loss is the members' mean negative log-likelihood.
* ``"split"``: the B rows are cut into M member-major slices of ``B / M`` examples, so
  each member sees different examples and a step costs what one network's step costs
  (B must be divisible by M). At test time the input is always tiled.

References:
  [1] Wen, Tran, Ba. BatchEnsemble: An Alternative Approach to Efficient Ensemble and
      Lifelong Learning. ICLR 2020. https://arxiv.org/abs/2002.06715
"""

from __future__ import annotations

import dataclasses
import functools

from relbench.errors import UsageError
from relbench.layers.batchensemble import (
    BatchEnsembleConv,
    BatchEnsembleDense,
    fast_weight_initializer,
)
from relbench.layers.members import tile_members
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.members import kernels, member_layers, unfold_members
from relbench.methods.method import Method, likelihood_loss, single_pass_predict

BATCH_LAYOUTS = ("tile", "split")


def check_ensemble_size(ensemble_size: int) -> None:
    if ensemble_size < 1:
        raise UsageError(f"ensemble_size must be >= 1, got {ensemble_size}")


def split_layout_predict(ensemble_size: int):
    """Test time under the split layout: tile the input, read the rows as M members."""

    def predict_fn(apply_fn, state, inputs, key):
        del key  # nothing is random at test time.
        tiled = tile_members(inputs, ensemble_size)  # [B, ...] -> [M*B, ...]
        return unfold_members(apply_fn(state.variables, tiled, train=False), ensemble_size)

    return predict_fn


def make(
    likelihood: Likelihood = CATEGORICAL,
    ensemble_size: int = 4,
    fast_weight_init: str = "random_sign",
    fast_weight_init_stddev: float = 0.5,
    batch_layout: str = "tile",
    label_smoothing: float = 0.0,
    fold_conv_alpha: bool = False,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    ensemble_size: M.
    fast_weight_init: ``"random_sign"`` (+-1) or ``"gaussian"`` (``N(1, stddev^2)``).
    fast_weight_init_stddev: the stddev of the ``"gaussian"`` fast-weight init.
    batch_layout: ``"tile"`` or ``"split"`` (see the module docstring).
    label_smoothing: mass moved from the label to the uniform distribution.
    fold_conv_alpha: convolutions fold ``alpha`` into per-member kernels
      (``BatchEnsembleConv.fold_alpha``; faster on CPU, slower on GPU).
    """
    check_ensemble_size(ensemble_size)
    if batch_layout not in BATCH_LAYOUTS:
        raise UsageError(f"unknown batch_layout '{batch_layout}'; choose tile or split")
    likelihood = likelihood.smoothed(label_smoothing)
    init = fast_weight_initializer(fast_weight_init, fast_weight_init_stddev)

    def layers(base):
        dense = functools.partial(
            BatchEnsembleDense, ensemble_size=ensemble_size, fast_weight_init=init
        )
        conv = functools.partial(
            BatchEnsembleConv,
            ensemble_size=ensemble_size,
            fast_weight_init=init,
            fold_alpha=fold_conv_alpha,
        )
        members = member_layers(base, likelihood, ensemble_size, dense, conv)
        if batch_layout == "split":  # one network over member-major rows: no tiling
            return dataclasses.replace(members, ensemble_size=1)
        return members

    return Method(
        layers=layers,
        loss_fn=likelihood_loss(likelihood, ("batch_stats",)),
        predict_fn=(
            single_pass_predict if batch_layout == "tile" else split_layout_predict(ensemble_size)
        ),
        decay_mask=kernels,
    )

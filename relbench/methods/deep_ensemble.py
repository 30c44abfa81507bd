"""Deep ensembles [1] trained as ONE vectorized program.

M independently initialized copies of the model, trained on the same batches, are the
members. Instead of M runs, every parameterized layer type of the model (``dense``,
``conv``, ``norm`` and the whole ``head``) becomes its ``independent_members`` version
(``layers.independent``): ``flax.linen.vmap`` over a leading member axis of every
variable, initialized with a ``vmap`` over member keys and trained with a ``vmap``
inside the one jitted step. The model tiles its input over the M members.

The loss is the SUM over members of each member's mean negative log-likelihood, so
that member ``m``'s gradient is exactly the gradient of its own loss: with any
optimizer that acts elementwise (SGD, momentum, Adam, weight decay) the members train
exactly as M separate runs on the same batches would. Global-norm gradient clipping
couples them. Weight decay applies to every leaf of rank > 2 (a member axis and a
matrix): the members' kernels, not their biases and scales.

Every variable has the leading member axis, so the method's partition rule lets the
mesh's ``model`` axis (``config.train.model_axis_size = E``) split the members over E
devices, each holding M / E members; batches stay sharded over the ``data`` axis. With
the axis split, ``unroll_conv=False`` lets XLA partition the vmapped convolutions along
the members (unrolled ones slice the split axis, which gathers it).

``vmap`` makes the M members' convolutions one grouped convolution, which XLA:CPU runs
about ten times slower than M ordinary ones; ``unroll_conv`` (the default) keeps the
stacked variables and their vmapped initialization but runs the M convolutions one
after another inside the same jitted program (dense layers and batch norms stay
vmapped: a batched matrix product is as fast as M ordinary ones).

References:
  [1] Lakshminarayanan, Pritzel, Blundell. Simple and Scalable Predictive Uncertainty
      Estimation using Deep Ensembles. NeurIPS 2017. https://arxiv.org/abs/1612.01474
"""

from __future__ import annotations

import dataclasses

import jax
from jax.sharding import PartitionSpec

from relbench.layers.independent import independent_members
from relbench.methods.batchensemble import check_ensemble_size
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.method import Method, dense_head, likelihood_loss, single_pass_predict

#: Every leaf of rank >= 1 (every variable and its optimizer state) has the member axis.
MEMBER_AXIS_RULES = ((r".*", PartitionSpec("model")),)


def summed_loss(likelihood: Likelihood, ensemble_size: int):
    """``sum_m mean_b NLL(member m, example b)``: each member gets its own gradient."""
    mean_loss = likelihood_loss(likelihood, ("batch_stats",))

    def loss_fn(*args, **kwargs):
        loss, (updates, metrics) = mean_loss(*args, **kwargs)
        return ensemble_size * loss, (updates, {**metrics, "member_loss": loss})

    return loss_fn


def member_matrices(params):
    """Weight decay on the members' kernels: leaves ``[M, ...]`` of rank > 2."""
    return jax.tree.map(lambda p: p.ndim > 2, params)


def make(
    likelihood: Likelihood = CATEGORICAL,
    ensemble_size: int = 4,
    unroll_conv: bool = True,
    label_smoothing: float = 0.0,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    ensemble_size: M.
    unroll_conv: run the members' convolutions one after another (else ``vmap``).
    label_smoothing: mass moved from the label to the uniform distribution.
    """
    check_ensemble_size(ensemble_size)
    likelihood = likelihood.smoothed(label_smoothing)

    def layers(base):
        return dataclasses.replace(
            base,
            ensemble_size=ensemble_size,
            dense=independent_members(base.dense, ensemble_size),
            conv=independent_members(base.conv, ensemble_size, unroll=unroll_conv),
            norm=independent_members(base.norm, ensemble_size),
            head=independent_members(dense_head(likelihood, base.dense), ensemble_size),
        )

    return Method(
        layers=layers,
        loss_fn=summed_loss(likelihood, ensemble_size),
        predict_fn=single_pass_predict,
        partition_rules=MEMBER_AXIS_RULES,
        decay_mask=member_matrices,
    )

"""Deep ensembles [1] trained as ONE vectorized program.

M independently initialized copies of the model, trained on the same batches, are the
members. Instead of M runs, every parameterized layer type of the model (``dense``,
``conv``, ``norm``, the head's dense) becomes its ``independent_members`` version
(``layers.independent``): ``flax.linen.vmap`` over a leading member axis of every
variable, initialized with a ``vmap`` over member keys and trained with a ``vmap``
inside the one jitted step. The model tiles its input over the M members.

The loss is the SUM over members of each member's mean cross-entropy, so that member
``m``'s gradient is exactly the gradient of its own loss: with any optimizer that acts
elementwise (SGD, momentum, Adam, weight decay) the members train exactly as M
separate runs on the same batches would. Global-norm gradient clipping couples them.

Every variable has the leading member axis, so ``config.train.ensemble_axis_size = E``
splits the members over E devices (the mesh's ``ensemble`` axis), each holding M / E
members; batches stay sharded over the remaining ``data`` axis. With the axis split,
``unroll_conv=False`` lets XLA partition the vmapped convolutions along the members
(unrolled ones slice the split axis, which gathers it).

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

import flax.linen as nn

from relbench.layers.independent import independent_members
from relbench.methods.batchensemble import check_ensemble_size
from relbench.methods.members import member_fields
from relbench.methods.method import Method, cross_entropy_loss, single_pass_predict


def summed_loss(ensemble_size: int, label_smoothing: float):
    """``sum_m mean_b CE(member m, example b)``: each member gets its own gradient."""
    mean_loss = cross_entropy_loss(("batch_stats",), label_smoothing)

    def loss_fn(*args, **kwargs):
        loss, (updates, metrics) = mean_loss(*args, **kwargs)
        return ensemble_size * loss, (updates, {**metrics, "member_loss": loss})

    return loss_fn


def make(ensemble_size: int = 4, unroll_conv: bool = True, label_smoothing: float = 0.0) -> Method:
    """Args:
    ensemble_size: M.
    unroll_conv: run the members' convolutions one after another (else ``vmap``).
    label_smoothing: mass moved from the label to the uniform distribution.
    """
    check_ensemble_size(ensemble_size)
    return Method(
        model_kwargs=member_fields(
            ensemble_size,
            independent_members(nn.Dense, ensemble_size),
            independent_members(nn.Conv, ensemble_size, unroll=unroll_conv),
        ),
        loss_fn=summed_loss(ensemble_size, label_smoothing),
        predict_fn=single_pass_predict,
        rng_streams=("dropout",),
        stacked_members=ensemble_size,
    )

"""MIMO [1]: M subnetworks in one network, trained on independently shuffled inputs.

The model keeps ``ensemble_size = 1`` (it is one network) and gets a ``MIMOHead`` with
M heads (``models.mimo``), each the likelihood's head. Each step draws, from the
``"mimo"`` RNG stream, one shuffle of the batch per member (``mimo_indices``: batch
repetition ``R``, input repetition ``rho``), feeds the M shuffled inputs stacked on the
channel axis, and averages the M heads' negative log-likelihoods of their own targets.
At test time every member sees the same input and the M heads give ``[M, B, K]``.

Default ``rho = 0.5``: half of each batch's slots show all members the same example.
With independent inputs only (``rho = 0``) the members of a small network learn slowly:
on the digits MLP and CNN at the learning gate's budget (tests/experiments) ``rho = 0``
trails deterministic by 3 and 12 points of test accuracy, ``rho = 0.5`` by at most 0.4;
[1] uses 0.5 on CIFAR-100 and 0.6 on ImageNet.

References:
  [1] Havasi, Jenatton, Fort, Liu, Snoek, Lakshminarayanan, Dai, Tran. Training
      independent subnetworks for robust prediction. ICLR 2021.
      https://arxiv.org/abs/2010.06610
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from relbench.errors import UsageError
from relbench.methods.batchensemble import check_ensemble_size
from relbench.methods.likelihoods import CATEGORICAL, Likelihood
from relbench.methods.members import unfold_members
from relbench.methods.method import Method, dense_head
from relbench.models.mimo import MIMOHead, mimo_indices, repeated_inputs, stack_member_inputs

RNG_STREAM = "mimo"


def member_metrics(likelihood: Likelihood, logits, extras, member_batch) -> dict:
    """The likelihood's training metrics of each member on its own targets, averaged
    over members: ``{"member_<metric>": value}``."""

    def one_member(member_logits, member_extras, batch):
        return likelihood.metrics(
            member_logits[None], jax.tree.map(lambda e: e[None], member_extras), batch
        )

    per_member = jax.vmap(one_member)(logits, extras, member_batch)
    return {f"member_{name}": jnp.mean(value) for name, value in per_member.items()}


def make(
    likelihood: Likelihood = CATEGORICAL,
    ensemble_size: int = 3,
    batch_repetitions: int = 1,
    input_repetition_probability: float = 0.5,
    label_smoothing: float = 0.0,
) -> Method:
    """Args:
    likelihood: the dataset's likelihood (given by the loop).
    ensemble_size: M, the number of inputs and heads.
    batch_repetitions: R, how many times each batch is repeated before shuffling.
    input_repetition_probability: rho, the fraction of slots all members share.
    label_smoothing: mass moved from the label to the uniform distribution.
    """
    check_ensemble_size(ensemble_size)
    if batch_repetitions < 1:
        raise UsageError(f"mimo needs batch_repetitions >= 1, got {batch_repetitions}")
    if not 0.0 <= input_repetition_probability <= 1.0:
        raise UsageError(
            f"mimo needs 0 <= input_repetition_probability <= 1, got {input_repetition_probability}"
        )
    likelihood = likelihood.smoothed(label_smoothing)

    def layers(base):
        head = functools.partial(
            MIMOHead, ensemble_size=ensemble_size, head=dense_head(likelihood, base.dense)
        )
        return dataclasses.replace(base, ensemble_size=1, head=head)

    def loss_fn(apply_fn, variables, batch, rngs, *, step, num_train_examples):
        del step, num_train_examples  # a plain likelihood needs neither.
        rngs = dict(rngs)
        rows = mimo_indices(
            rngs.pop(RNG_STREAM),
            batch["input"].shape[0],
            ensemble_size,
            batch_repetitions,
            input_repetition_probability,
        )  # [M, R*B]
        inputs = stack_member_inputs(batch["input"][rows])  # [M, R*B, ...] -> [R*B, ..., M*C]
        outputs, updates = apply_fn(
            variables, inputs, train=True, rngs=rngs, mutable=["batch_stats"]
        )
        logits, extras = unfold_members(outputs, ensemble_size)  # [M, R*B, K]
        # Member m's targets are the rows it saw: [M, R*B, ...].
        member_batch = {name: value[rows] for name, value in batch.items() if name != "input"}
        loss = -likelihood.log_prob(logits, extras, member_batch).mean()
        return loss, (dict(updates), member_metrics(likelihood, logits, extras, member_batch))

    def predict_fn(apply_fn, state, inputs, key):
        del key  # nothing is random at test time.
        stacked = repeated_inputs(inputs, ensemble_size)  # [B, ..., C] -> [B, ..., M*C]
        return unfold_members(apply_fn(state.variables, stacked, train=False), ensemble_size)

    return Method(
        layers=layers,
        loss_fn=loss_fn,
        predict_fn=predict_fn,
        rng_streams=("dropout", RNG_STREAM),
        init_inputs=functools.partial(repeated_inputs, ensemble_size=ensemble_size),
    )

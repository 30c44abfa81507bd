"""Subpopulation shift: datasets whose examples carry group labels, and group reweighting.

A dataset with subpopulations gives every example a ``"group"`` row, its ``[G]`` 0/1
membership in G groups (``group_membership``); evaluation sets that carry it get the
per-group and worst-group metrics of ``relbench.metrics.groups``.

``colored_digits`` is the group-shifted set built from the embedded 8x8 digits, in the
manner of Colored MNIST [2] and Waterbirds [1]: the label is ``y = 1[digit >= 5]`` and
the spurious attribute ``a`` is the colour the digit is drawn in (the image lies in
channel ``a`` of a ``[8, 8, 2]`` input, the other channel is 0). In training (and in
the ``validation`` set, drawn like it) ``a = y`` with probability ``correlation``, so
the colour predicts the label better than most shapes do; in ``test`` the colour is
drawn independently of the label (probability 1/2 each). The four groups are
``g = 2 y + a``; the minority groups ``a != y`` hold ``1 - correlation`` of the
training set. A model that takes the colour shortcut is right on the majority groups
and wrong on the minority ones: its worst-group accuracy falls below its average.

Group reweighting (``group_weighting="balanced"``) [1, 3] gives every training example
the weight ``w_i = N / (G' n_{g(i)})`` (``n_g`` examples in group ``g``, G' non-empty
groups), so each group carries the same total weight and the weights average 1; every
method's likelihood multiplies each example's log-likelihood by its ``"weight"``
(``relbench.methods.likelihoods``), so the baseline composes with every method.
``group_weighting="none"`` is empirical risk minimization (ERM).

References:
  [1] Sagawa, Koh, Hashimoto, Liang. Distributionally Robust Neural Networks for Group
      Shifts: On the Importance of Regularization for Worst-Case Generalization. ICLR
      2020. https://arxiv.org/abs/1911.08731
  [2] Arjovsky, Bottou, Gulrajani, Lopez-Paz. Invariant Risk Minimization. 2019.
      https://arxiv.org/abs/1907.02893
  [3] Idrissi, Arjovsky, Pezeshki, Lopez-Paz. Simple data balancing achieves
      competitive worst-group-accuracy. CLeaR 2022. https://arxiv.org/abs/2110.14503
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as sklearn_datasets

from relbench.data.sources import ArraySource, Dataset, EvalSet, split_by_fraction
from relbench.errors import UsageError

_SPLIT_SEED = 0  # the embedded sets' split and draws never depend on the run's seed
GROUP_WEIGHTINGS = ("none", "balanced")


def group_membership(group_ids: np.ndarray, num_groups: int) -> np.ndarray:
    """``[N]`` group indices -> ``[N, G]`` float32 0/1 membership rows."""
    return np.eye(num_groups, dtype=np.float32)[np.asarray(group_ids)]


def balanced_weights(groups: np.ndarray) -> np.ndarray:
    """``[N, G]`` memberships -> ``[N]`` weights ``N / (G' n_g)`` (one group per row)."""
    if np.any(groups.sum(axis=1) != 1):
        raise UsageError(
            "group reweighting needs exactly one group per training example; give each "
            "example one group or set group_weighting='none'"
        )
    counts = groups.sum(axis=0)
    weight_of_group = np.where(counts > 0, len(groups) / (np.sum(counts > 0) * counts.clip(1)), 0)
    return (groups @ weight_of_group).astype(np.float32)


def with_group_weights(train: ArraySource, group_weighting: str) -> ArraySource:
    """The training source with ``"weight"`` per example for ``group_weighting``."""
    if group_weighting not in GROUP_WEIGHTINGS:
        raise UsageError(
            f"unknown group_weighting '{group_weighting}'; choose one of: "
            f"{', '.join(GROUP_WEIGHTINGS)}"
        )
    if group_weighting == "none":
        return train
    return ArraySource({**train.arrays, "weight": balanced_weights(train.arrays["group"])})


def _colored(images: np.ndarray, digits: np.ndarray, correlation: float | None, rng):
    """Examples with the colour drawn to agree with the label ``correlation`` of the
    time (None: independently of it)."""
    labels = (digits >= 5).astype(np.int32)
    if correlation is None:
        colour = rng.integers(0, 2, len(labels))
    else:
        colour = np.where(rng.uniform(size=len(labels)) < correlation, labels, 1 - labels)
    inputs = np.zeros((*images.shape[:3], 2), np.float32)  # [N, 8, 8, 2]
    inputs[np.arange(len(labels)), ..., colour] = images[..., 0]
    return {
        "input": inputs,
        "label": labels,
        "group": group_membership(2 * labels + colour, 4),
    }


def colored_digits(correlation: float = 0.95, group_weighting: str = "none") -> Dataset:
    """The group-shifted digits of the module docstring (2 classes, 4 groups).

    Args:
      correlation: how often the colour equals the label in training and validation,
        in [0.5, 1).
      group_weighting: ``"none"`` (ERM) or ``"balanced"`` (group reweighting).
    """
    if not 0.5 <= correlation < 1.0:
        raise UsageError(
            f"colored_digits correlation {correlation} must be in [0.5, 1); fix "
            "config.dataset.correlation"
        )
    bunch = sklearn_datasets.load_digits()
    images = (bunch.images / 16.0)[..., None].astype(np.float32)  # [N, 8, 8] -> [N, 8, 8, 1]
    train, validation, test = split_by_fraction(
        {"input": images, "digit": bunch.target}, [0.7, 0.1, 0.2], _SPLIT_SEED
    )
    rng = np.random.default_rng(_SPLIT_SEED)
    sets = [
        ArraySource(_colored(s.arrays["input"], s.arrays["digit"], c, rng))
        for s, c in ((train, correlation), (validation, correlation), (test, None))
    ]
    return Dataset(
        train=with_group_weights(sets[0], group_weighting),
        eval_sets={"validation": EvalSet(sets[1]), "test": EvalSet(sets[2])},
        num_classes=2,
        input_shape=(8, 8, 2),
    )

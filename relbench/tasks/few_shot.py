"""Few-shot (k-shot) linear evaluation on the frozen features of a finished run.

For each ``k`` in ``shots``, ``k`` training examples per class (a fixed draw from
``seed``) are embedded by the run's model: the penultimate features
``extras["features"]`` averaged over the members, ``h_i`` ``[D]``. A ridge-regression
probe is fitted on them in closed form, as the few-shot linear evaluation of BiT and
ViT does [1, 2]: with ``H`` the ``[n, D]`` features centred by their mean ``mu``, targets
``Y`` the one-hot labels centred by their mean ``ybar`` and ``lambda`` = ``l2``,

    W = (H^T H + lambda I)^-1 H^T Y,    b = ybar - mu W,

and a test example is assigned ``argmax_k (h W + b)_k``. ``few_shot_results`` reports
``{k}shot_accuracy`` on an evaluation set. The network's parameters never change; the
probe is fitted on the host in float64. A linear probe trained by the loop instead is
``config.init_from`` with ``freeze`` on everything but the head
(``relbench.train.init_from``).

References:
  [1] Kolesnikov et al. Big Transfer (BiT): General Visual Representation Learning.
      ECCV 2020. https://arxiv.org/abs/1912.11370
  [2] Dosovitskiy et al. An Image is Worth 16x16 Words: Transformers for Image
      Recognition at Scale. ICLR 2021. https://arxiv.org/abs/2010.11929
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import jax
import numpy as np

from relbench import data as data_lib
from relbench.errors import UsageError
from relbench.train import loop, sharding


def ridge_probe(features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float):
    """``(W [D, K], b [K])`` of the module docstring's closed form."""
    h = np.asarray(features, np.float64)
    y = np.eye(num_classes)[np.asarray(labels)]
    mu, ybar = h.mean(0), y.mean(0)
    centred = h - mu
    weights = np.linalg.solve(centred.T @ centred + l2 * np.eye(h.shape[1]), centred.T @ (y - ybar))
    return weights, ybar - mu @ weights


def shot_indices(labels: np.ndarray, shots: int, num_classes: int, seed: int) -> np.ndarray:
    """``shots`` positions per class, drawn without replacement from ``seed``."""
    rng = np.random.default_rng([seed, shots])
    picked = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < shots:
            raise UsageError(
                f"class {c} has {len(members)} training examples, fewer than {shots} shots; "
                "choose fewer shots"
            )
        picked.append(rng.choice(members, shots, replace=False))
    return np.sort(np.concatenate(picked))


def few_shot_results(
    run_dir: str | pathlib.Path,
    shots: Sequence[int] = (1, 5, 10),
    eval_set: str = "test",
    l2: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """``{"{k}shot_accuracy": ...}`` of a finished run's frozen features on ``eval_set``."""
    from relbench.train.ensemble_eval import load_run  # rebuilds a finished run

    mesh = sharding.data_mesh()
    run = load_run(run_dir, mesh)
    dataset = run.exp.dataset
    if dataset.label_classes is None:
        raise UsageError("few-shot evaluation needs a classification dataset")
    if eval_set not in dataset.eval_sets or dataset.eval_sets[eval_set].is_ood:
        raise UsageError(f"'{eval_set}' is not an in-distribution set of the run's dataset")
    train = dataset.train
    everything = np.arange(len(train))
    labels = np.concatenate(
        [train.read(everything[i : i + 4096])["label"] for i in range(0, len(train), 4096)]
    )
    subsets = {f"{k}shot": shot_indices(labels, k, dataset.num_classes, seed) for k in shots}
    sets = {name: data_lib.EvalSet(data_lib.SubsetSource(train, i)) for name, i in subsets.items()}
    sets[eval_set] = dataset.eval_sets[eval_set]
    exp = dataclasses.replace(run.exp, dataset=dataclasses.replace(dataset, eval_sets=sets))
    state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), run.state)
    predict = loop.make_eval_step(exp, mesh, state_sharding).predict
    features = {}
    for name in sets:
        key = loop.named_key(run.eval_key, f"few_shot/{name}")
        (_, extras), targets = loop.set_outputs(exp, run.state, predict, name, key, mesh)
        features[name] = (np.asarray(extras["features"]).mean(0), np.asarray(targets["label"]))
    test_features, test_labels = features[eval_set]
    out = {}
    for k in shots:
        weights, bias = ridge_probe(*features[f"{k}shot"], dataset.num_classes, l2)
        predicted = np.argmax(test_features @ weights + bias, axis=1)
        out[f"{k}shot_accuracy"] = float(np.mean(predicted == test_labels))
    return out

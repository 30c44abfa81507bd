"""``digits_mlp.py`` with the MLP written in Flax NNX (``relbench.models.nnx_mlp``).

    relbench train --config experiments/digits_nnx_mlp.py:sngp --workdir runs/digits_nnx

The same dataset, widths, optimizer, method recipes, evaluation and sweep as
``digits_mlp.py``; only ``config.model.name`` differs: the loop trains the NNX model
through ``nnx.split`` / ``nnx.merge`` (``relbench.nnx.model``), and the method's layer
types become their NNX twins (``relbench.nnx.twins``). ``arg``: ``METHOD[,smoke]``.
"""

import pathlib

import ml_collections

from relbench.configs.files import load_module

DIGITS_MLP = load_module(str(pathlib.Path(__file__).with_name("digits_mlp.py")))
METHOD_RECIPES = DIGITS_MLP.METHOD_RECIPES
sweep = DIGITS_MLP.sweep


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = DIGITS_MLP.get_config(arg)
    config.model.name = "nnx_mlp"  # an existing key: allowed on the locked config
    return config

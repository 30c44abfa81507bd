"""An MLP on the user's own arrays file(s) (``relbench.data.files.arrays``): no code.

    relbench train --config experiments/user_data/arrays_mlp.py[:METHOD] \
        --config.dataset.path=DATA --workdir runs/mine

Every field of ``relbench.data.files.arrays`` is in ``config.dataset`` with its
default, so splits, keys or columns, OOD and shifted sets are set from the command
line; ``arg`` is ``METHOD[,smoke]`` (default ``deterministic``).
"""

import ml_collections

from relbench.configs.recipes import user_files_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return user_files_config("arrays", {"name": "mlp", "hidden_sizes": (128, 128)}, arg)

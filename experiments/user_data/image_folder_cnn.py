"""A CNN on the user's own images, one subfolder per class (``relbench.data.image_folders``).

    relbench train --config experiments/user_data/image_folder_cnn.py[:METHOD] \
        --config.dataset.path=IMAGES --config.dataset.image_size=32 --workdir runs/mine

Every field of ``relbench.data.image_folders.image_folder`` is in ``config.dataset``
with its default; ``config.train.data_threads`` (8 here) grain threads decode training
batches ahead of the step. ``arg`` is ``METHOD[,smoke]`` (default ``deterministic``).
"""

import ml_collections

from relbench.configs.recipes import user_files_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = user_files_config("image_folder", {"name": "cnn", "features": (32, 64)}, arg)
    config.train.data_threads = 8
    return config

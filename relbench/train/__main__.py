"""``python -m relbench.train ...`` is ``relbench train ...``."""

import sys

from relbench.train.cli import main

main([sys.argv[0], "train", *sys.argv[1:]])

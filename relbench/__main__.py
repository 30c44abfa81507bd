"""``python -m relbench COMMAND ...`` is ``relbench COMMAND ...`` (used to spawn workers)."""

from relbench.train.cli import main

main()

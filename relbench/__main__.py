"""``python -m relbench COMMAND ...`` is ``relbench COMMAND ...`` (used to spawn workers)."""

from relbench.cli.main import main

main()

"""The ``relbench`` command line (``relbench.cli.main``) and the benchmark behind
``make run`` (``relbench.cli.benchmark``)."""

from relbench.cli.main import main

__all__ = ["main"]

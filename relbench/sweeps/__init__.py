"""Sweeps: many trials of one config (seeds, hyperparameters), each its own run.

A config file may define ``sweep()`` returning a list of override dicts
(``{"optimizer.learning_rate": 0.1, "seed": 2}``); ``relbench sweep`` runs one
``relbench train`` per dict (runner.py). ``halton`` builds quasi-random search spaces.
"""

from relbench.sweeps import halton

__all__ = ["halton"]

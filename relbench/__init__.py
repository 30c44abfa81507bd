"""relbench: reliable deep learning in JAX/Flax.

Uncertainty layers (``relbench.layers``), a probabilistic language (``relbench.ppl``),
models, methods, datasets, metrics, and one shared train/eval loop
(``relbench.train``). See DESIGN.md for the contracts.
"""

__version__ = "0.1.0"

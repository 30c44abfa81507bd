"""relbench: reliable deep learning in JAX/Flax.

Uncertainty layers (``relbench.layers``), a probabilistic language (``relbench.ppl``),
models, methods, post-hoc steps, datasets, metrics, and one shared train/eval loop
(``relbench.train``). CONTRIBUTING.md describes the architecture and the contracts.
"""

__version__ = "0.1.0"

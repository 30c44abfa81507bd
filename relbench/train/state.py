"""The train state: everything a run needs to continue, and nothing random."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
    """Step, parameters, optimizer state and every non-parameter collection.

    ``collections`` holds what models update in training besides parameters (batch
    statistics, spectral-norm vectors, GP precision matrices), keyed by collection name.
    No PRNG key lives here: the step's key is derived from the step (DESIGN.md, Keys).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    collections: dict[str, Any]

    @property
    def variables(self) -> dict[str, Any]:
        """The Flax variables dict for ``model.apply``."""
        return {"params": self.params, **self.collections}

"""The train state: everything a run needs to continue, and nothing random."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
    """Step, parameters, optimizer state, every non-parameter collection, and what the
    method fits after training.

    ``collections`` holds what models update in training besides parameters (batch
    statistics, spectral-norm vectors, GP precision matrices), keyed by collection name.
    ``opt_state`` is the state of the run's optimizer as the method wrapped it (a
    trajectory method's moments live there). ``fitted`` is the slot a method's
    ``after_training`` fills (``Method.init_fitted`` gives its structure at init; None
    for methods that fit nothing). No PRNG key lives here: the step's key is derived
    from the step, so a resumed run draws the same numbers.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    collections: dict[str, Any]
    fitted: Any = None

    @property
    def variables(self) -> dict[str, Any]:
        """The Flax variables dict for ``model.apply``."""
        return {"params": self.params, **self.collections}

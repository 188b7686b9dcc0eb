"""The train state: everything a checkpoint must hold to resume a run exactly."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
    """Step counter, parameters, optimizer state and the run's base PRNG key data.

    Attributes:
      step: int32 scalar, number of updates applied.
      params: parameter pytree.
      opt_state: optax state pytree.
      rng: uint32 [2] raw key data; step keys are fold_in(rng, step), so resuming needs
        nothing but this and the step.
      skipped: int32 scalar, steps whose loss or gradients were not finite and were skipped
        (their update not applied).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    skipped: jax.Array

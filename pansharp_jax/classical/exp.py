"""EXP: the MS upsampled to the PAN grid with the toolbox's 23-tap interpolator.

Not a fusion at all (the PAN is ignored); every table reports it as the reference a
method must beat. Equal to the toolbox's ``interp23tap(I_MS_LR, ratio)``.
"""

from __future__ import annotations

import jax

from pansharp_jax.classical._common import classical_method
from pansharp_jax.data.sensors import Sensor


@classical_method("exp")
def exp(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """EXP on one image: returns ``lms`` (H, W, C) unchanged, same scale as the input."""
    del pan, lrms, sensor, ratio
    return lms

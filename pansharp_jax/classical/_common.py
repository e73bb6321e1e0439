"""What every classical method shares: input checks, the MS upsampling, batching and jit.

A classical method is written once, for one image, as ``core(lms, pan, lrms, *, sensor,
ratio) -> fused`` on (H, W, C), (H, W, 1), (h, w, C) arrays; :func:`classical_method`
turns it into the public ``fuse(params, lrms, pan, *, rng=None, sensor, ratio)`` of the
design contract: it checks the inputs, makes ``lms`` with the toolbox's ``interp23tap``,
maps over any leading batch dimensions with ``vmap`` and jits with the sensor and ratio
static.

Scale: every method here is scale-equivariant (linear regressions, ratios, minima), so
it gives the same image on the [0, 1] scale as on DN up to that factor; the toolbox runs
on DN, and the golden tests do too. Precision follows the input dtype: float64 inputs
under ``jax.enable_x64(True)`` reproduce the toolbox; float32 is the everyday default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.data import wald
from pansharp_jax.data.sensors import Sensor, get_sensor
from pansharp_jax.errors import InputError


class Core(Protocol):
    def __call__(self, lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array: ...


class Fuse(Protocol):
    def __call__(
        self, params: Any, lrms: Any, pan: Any, *, rng: Any = None, sensor: str | Sensor | None = "generic", ratio: int = 4
    ) -> jax.Array: ...


def upsample_ms(lrms: jax.Array, ratio: int) -> jax.Array:
    """``lms``: the toolbox's ``interp23tap`` for power-of-two ratios, ``interp_general`` else.

    lrms: (..., h, w, C), any scale -> (..., ratio*h, ratio*w, C), same scale and dtype.
    """
    if ratio >= 1 and ratio & (ratio - 1) == 0:
        return wald.interp23tap(lrms, ratio)
    return wald.interp_general(lrms, ratio)


def check_inputs(lrms: Any, pan: Any, ratio: int, method: str) -> None:
    """Raise :class:`InputError` naming the problem when ``lrms``/``pan`` cannot be fused.

    lrms: (..., h, w, C); pan: (..., H, W, 1) or (..., H, W) with H = ratio * h,
    W = ratio * w and the same leading (batch) dimensions.
    """
    if not isinstance(ratio, (int, np.integer)) or ratio < 1:
        raise InputError(f"{method}: ratio must be a positive integer, got {ratio!r}")
    ls, ps = tuple(np.shape(lrms)), tuple(np.shape(pan))
    if len(ls) < 3:
        raise InputError(f"{method}: lrms must be (..., h, w, C), got shape {ls}")
    if len(ps) != len(ls):
        raise InputError(f"{method}: pan must be (..., H, W, 1) like lrms (..., h, w, C); got pan {ps}, lrms {ls}")
    if ps[-1] != 1:
        raise InputError(f"{method}: pan must have 1 band (last axis), got {ps[-1]}")
    if ps[:-3] != ls[:-3]:
        raise InputError(f"{method}: batch dimensions differ: lrms {ls[:-3]} vs pan {ps[:-3]}")
    if (ps[-3], ps[-2]) != (ratio * ls[-3], ratio * ls[-2]):
        raise InputError(
            f"{method}: pan is {ps[-3]}x{ps[-2]} but lrms {ls[-3]}x{ls[-2]} x ratio {ratio} "
            f"= {ratio * ls[-3]}x{ratio * ls[-2]}"
        )


def _as_float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def classical_method(name: str) -> Callable[[Core], Fuse]:
    """Decorator: one-image ``core`` -> batched, checked, jitted ``fuse`` (design contract).

    The returned ``fuse(params, lrms, pan, *, rng=None, sensor='generic', ratio=4)``:
      params: must be None (classical methods learn nothing).
      lrms: (..., h, w, C) low-resolution MS; pan: (..., H, W, 1) (or (..., H, W)).
        Any scale (DN or [0, 1]); the output has the same scale. Leading dims = batch.
      rng: ignored (deterministic).
      sensor: toolbox sensor string or :class:`Sensor` (MTF gains for the MTF-based ones).
      ratio: PAN/MS scale ratio (int).
    Returns (..., H, W, C), the dtype of the inputs.
    """

    def wrap(core: Core) -> Fuse:
        @functools.partial(jax.jit, static_argnames=("sensor", "ratio"))
        def _batched(lrms: jax.Array, pan: jax.Array, sensor: Sensor, ratio: int) -> jax.Array:
            lead = lrms.shape[:-3]
            lr = lrms.reshape((-1, *lrms.shape[-3:]))
            p = pan.reshape((-1, *pan.shape[-3:]))

            def one(lr1: jax.Array, p1: jax.Array) -> jax.Array:
                return core(upsample_ms(lr1, ratio), p1, lr1, sensor=sensor, ratio=ratio)

            out = jax.vmap(one)(lr, p)
            return out.reshape((*lead, *out.shape[-3:]))

        @functools.wraps(core)
        def fuse(
            params: Any, lrms: Any, pan: Any, *, rng: Any = None, sensor: str | Sensor | None = "generic", ratio: int = 4
        ) -> jax.Array:
            if params is not None:
                raise InputError(f"{name} is a classical method and takes params=None")
            lrms, pan = _as_float(lrms), _as_float(pan)
            if pan.ndim == lrms.ndim - 1:
                pan = pan[..., None]
            check_inputs(lrms, pan, int(ratio), name)
            sensor_obj = get_sensor(sensor)
            sensor_obj.gains(lrms.shape[-1])  # InputError on a wrong band count for the sensor
            dtype = jnp.result_type(lrms.dtype, pan.dtype)
            return _batched(lrms.astype(dtype), pan.astype(dtype), sensor_obj, int(ratio))

        fuse.__name__ = name
        fuse.core = core  # type: ignore[attr-defined]  # the one-image function, for tests
        return fuse

    return wrap

"""Full-resolution metrics (no ground truth), equal to the MATLAB toolbox.

The toolbox's ``indexes_evaluation_FS`` scores a fused image F (at PAN resolution)
with the low-resolution MS (``lrms``), its upsampled version ``I_MS = interp23tap(lrms)``
and the PAN, all in DN:

* ``D_lambda_K`` (Khan's spectral distortion, used by HQNR):
  ``1 - Q2n(I_MS, MTF(F))`` with F filtered by the sensor's MTF-matched Gaussians and
  not decimated; 32 x 32 blocks.
* ``D_S`` (spatial distortion, toolbox-1.0 variant): for each band, UIQI of F vs PAN
  and of I_MS vs ``interp23tap(imresize(PAN, 1/ratio))`` (MATLAB bicubic with
  antialiasing), each averaged over non-overlapping 32 x 32 blocks;
  ``D_S = (mean_b |Q_high - Q_low|^q)^(1/q)``, q = 1. The PAN is resized in floating
  point: that reproduces the project's reference values, whereas MATLAB handed a
  uint16 PAN would round the resized PAN to integers (on ``ikonos_pnn`` that moves
  D_S by 4e-4 relative).
* ``D_lambda`` (QNR's spectral distortion, toolbox-1.0 variant): inter-band UIQI on
  32 x 32 blocks of I_MS vs of F, ``(mean_pairs |Q_F(i,j) - Q_MS(i,j)|^p)^(1/p)``, p = 1.
* ``HQNR = (1 - D_lambda_K)(1 - D_S)``; ``QNR = (1 - D_lambda)(1 - D_S)``.

Image sides must be multiples of the block size (the toolbox refuses others).
Array functions take (..., H, W, C) arrays (channels last, leading batch dims
optional; PAN (..., H, W, 1)) in DN and return values of shape (...); pure and
jittable. Use float64 under ``jax.enable_x64(True)`` for toolbox-exact values:
:func:`evaluate_full` does that.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.data import wald
from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.data.sensors import Sensor, get_sensor
from pansharp_jax.errors import InputError
from pansharp_jax.metrics._quality import matlab_uint16, q2n, uiqi_blocks, uiqi_blocks_band_pairs
from pansharp_jax.metrics.reduced import _to_python

FULL_KEYS = ("D_lambda", "D_lambda_K", "D_S", "QNR", "HQNR")


def upsample(x: jax.Array, ratio: int) -> jax.Array:
    """``interp23tap`` for power-of-two ratios (the toolbox), ``interp_general`` otherwise."""
    if ratio >= 1 and ratio & (ratio - 1) == 0:
        return wald.interp23tap(x, ratio)
    return wald.interp_general(x, ratio)


def pan_low(pan: jax.Array, ratio: int) -> jax.Array:
    """The toolbox's low-pass PAN for ``D_S``: ``interp23tap(imresize(pan, 1/ratio), ratio)``."""
    return upsample(imresize_bicubic(pan, 1.0 / ratio), ratio)


# Each stage is compiled on its own: on CPU, XLA runs one program holding several
# independent heavy stages markedly slower than the stages in sequence.
_upsample = jax.jit(upsample, static_argnums=1)
_pan_low = jax.jit(pan_low, static_argnums=1)
_uint16 = jax.jit(matlab_uint16)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _mtf_uint16(x: jax.Array, gains: tuple[float, ...], ratio: int) -> jax.Array:
    # the uint16 cast of Q2n rides along the copy that ends the filter
    return matlab_uint16(wald.mtf_filter(x, gains, ratio))


@functools.partial(jax.jit, static_argnames=("block",))
def _mean_block_q(x: jax.Array, y: jax.Array, block: int) -> jax.Array:
    return jnp.mean(uiqi_blocks(x, y, block), axis=(-3, -2))


@functools.partial(jax.jit, static_argnames=("block",))
def _mean_band_pair_q(x: jax.Array, block: int) -> jax.Array:
    i, j = np.triu_indices(x.shape[-1], k=1)
    return jnp.mean(uiqi_blocks_band_pairs(x, block), axis=(-4, -3))[..., i, j]


@functools.partial(jax.jit, static_argnames=("block",))
def _q2n_cast(ref_u16: jax.Array, fused_u16: jax.Array, block: int) -> jax.Array:
    return q2n(ref_u16, fused_u16, block, block, cast=False)


def _check_blocks(x: jax.Array, block: int) -> None:
    h, w = x.shape[-3], x.shape[-2]
    if h % block or w % block:
        raise InputError(f"full-resolution indices need sides that are multiples of {block}, got {h}x{w}")


def d_lambda_k(
    fused: jax.Array, ms_up: jax.Array, gains: tuple[float, ...], ratio: int = 4, block: int = 32
) -> jax.Array:
    """Khan's spectral distortion ``1 - Q2n(ms_up, MTF(fused))`` (toolbox ``D_lambda_K``).

    Args:
      fused: (..., H, W, C) fused image, DN. ms_up: ``interp23tap(lrms)``, same shape, DN.
      gains: per-band MTF gains at Nyquist (``Sensor.gains(C)``), a tuple (static).
      ratio: PAN/MS ratio. block: Q2n block side (shift = block).

    Returns:
      (...) values (0 = no distortion). Jittable.
    """
    _check_blocks(fused, block)
    return 1.0 - _q2n_cast(_uint16(ms_up), _mtf_uint16(fused, tuple(gains), int(ratio)), int(block))


def d_s(
    fused: jax.Array, ms_up: jax.Array, pan: jax.Array, ratio: int = 4, block: int = 32, q: float = 1.0
) -> jax.Array:
    """Spatial distortion ``D_S`` (toolbox ``D_s``, toolbox-1.0 variant; QNR and HQNR).

    Args:
      fused: (..., H, W, C) DN. ms_up: ``interp23tap(lrms)``, (..., H, W, C) DN.
      pan: (..., H, W, 1) DN. ratio: PAN/MS ratio. block: block side. q: exponent.

    Returns:
      (...) values (0 = no distortion). Jittable.
    """
    _check_blocks(fused, block)
    q_high = _mean_block_q(fused, pan, int(block))
    q_low = _mean_block_q(ms_up, _pan_low(pan, int(ratio)), int(block))
    return jnp.mean(jnp.abs(q_high - q_low) ** q, axis=-1) ** (1.0 / q)


def d_lambda(fused: jax.Array, ms_up: jax.Array, block: int = 32, p: float = 1.0) -> jax.Array:
    """QNR's spectral distortion (toolbox ``D_lambda``, toolbox-1.0 variant).

    ``(mean over band pairs |Q(F_i, F_j) - Q(MS_i, MS_j)|^p)^(1/p)``, Q the UIQI averaged
    over non-overlapping blocks.

    Args:
      fused, ms_up: (..., H, W, C) DN, C >= 2. block: block side. p: exponent.

    Returns:
      (...) values (0 for ``fused == ms_up``). Jittable.
    """
    _check_blocks(fused, block)
    if fused.shape[-1] < 2:
        raise InputError("D_lambda needs at least two bands")
    q_ms = _mean_band_pair_q(ms_up, int(block))
    q_f = _mean_band_pair_q(fused, int(block))
    return jnp.mean(jnp.abs(q_f - q_ms) ** p, axis=-1) ** (1.0 / p)


def hqnr_from_upsampled(
    fused: jax.Array, ms_up: jax.Array, pan: jax.Array, gains: tuple[float, ...], ratio: int = 4, block: int = 32
) -> dict[str, jax.Array]:
    """HQNR from DN inputs with ``ms_up = interp23tap(lrms)`` given, as the toolbox's ``HQNR``.

    fused, ms_up (..., H, W, C), pan (..., H, W, 1), DN. Returns ``{"D_lambda_K", "D_S", "HQNR"}``.
    """
    dlk = d_lambda_k(fused, ms_up, gains, ratio, block)
    ds = d_s(fused, ms_up, pan, ratio, block)
    return {"D_lambda_K": dlk, "D_S": ds, "HQNR": (1.0 - dlk) * (1.0 - ds)}


def hqnr_dn(
    fused: jax.Array, lrms: jax.Array, pan: jax.Array, gains: tuple[float, ...], ratio: int = 4, block: int = 32
) -> dict[str, jax.Array]:
    """HQNR and its two factors from DN inputs: ``{"D_lambda_K", "D_S", "HQNR"}``.

    fused (..., H, W, C), lrms (..., H/ratio, W/ratio, C), pan (..., H, W, 1), DN.
    """
    return hqnr_from_upsampled(fused, _upsample(lrms, int(ratio)), pan, gains, ratio, block)


def full_metrics_dn(
    fused: jax.Array, lrms: jax.Array, pan: jax.Array, gains: tuple[float, ...], ratio: int = 4, block: int = 32
) -> dict[str, jax.Array]:
    """All full-resolution indices from DN inputs (keys :data:`FULL_KEYS`)."""
    ms_up = _upsample(lrms, int(ratio))
    dlk = d_lambda_k(fused, ms_up, gains, ratio, block)
    dl = d_lambda(fused, ms_up, block)
    ds = d_s(fused, ms_up, pan, ratio, block)
    return {
        "D_lambda": dl,
        "D_lambda_K": dlk,
        "D_S": ds,
        "QNR": (1.0 - dl) * (1.0 - ds),
        "HQNR": (1.0 - dlk) * (1.0 - ds),
    }


@functools.partial(jax.jit, static_argnums=3)
def _to_dn(fused: jax.Array, lrms: jax.Array, pan: jax.Array, max_dn: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    return fused * max_dn, lrms * max_dn, pan * max_dn


def _check_full_inputs(fused: Any, lrms: Any, pan: Any, ratio: int, block: int) -> None:
    fs, ls, ps = np.shape(fused), np.shape(lrms), np.shape(pan)
    if len(fs) < 3:
        raise InputError(f"fused must be (..., H, W, C), got shape {fs}")
    if len(ls) != len(fs) or len(ps) != len(fs):
        raise InputError(f"fused {fs}, lrms {ls} and pan {ps} must have the same number of dimensions")
    h, w, c = fs[-3:]
    if ps != (*fs[:-1], 1):
        raise InputError(f"pan must be (..., {h}, {w}, 1) to match fused {fs}, got {ps}")
    if ls != (*fs[:-3], h // ratio, w // ratio, c) or h % ratio or w % ratio:
        raise InputError(f"lrms {ls} does not match fused {fs} at ratio {ratio}")
    if h % block or w % block:
        raise InputError(f"full-resolution indices need sides that are multiples of {block}, got {h}x{w} (crop it)")


def evaluate_full(
    fused: Any,
    lrms: Any,
    pan: Any,
    *,
    sensor: str | Sensor | None,
    ratio: int = 4,
    max_dn: float = 2047.0,
    block: int = 32,
    flag_qnr: bool = False,
) -> dict[str, Any]:
    """Score a full-resolution fusion, as the toolbox's ``indexes_evaluation_FS``.

    Args:
      fused: (H, W, C) or (..., H, W, C) fused image, [0, 1] scale (not clipped).
      lrms: (..., H/ratio, W/ratio, C) low-resolution MS, [0, 1].
      pan: (..., H, W, 1) PAN, [0, 1].
      sensor: sensor name or ``Sensor`` (MTF gains for ``D_lambda_K``); None = generic.
      ratio: PAN/MS ratio. max_dn: DN of value 1.0 (2047 for 11 bits): the indices are
        computed on ``x * max_dn`` as in the toolbox (they barely depend on it, except
        through the uint16 cast inside Q2n).
      block: block side (32); H and W must be multiples of it.
      flag_qnr: the toolbox's ``flagQNR``. Both families are always computed; this
        only puts the QNR keys (True) or the HQNR keys (False, the toolbox default) first.

    Returns:
      ``{"D_lambda", "D_lambda_K", "D_S", "QNR", "HQNR"}``: Python floats for one image,
      float64 NumPy arrays of shape (...) for a batch. Computed in float64.
    """
    ratio, block = int(ratio), int(block)
    _check_full_inputs(fused, lrms, pan, ratio, block)
    if not max_dn > 0:
        raise InputError(f"max_dn must be positive, got {max_dn}")
    gains = get_sensor(sensor).gains(np.shape(fused)[-1])
    with jax.enable_x64(True):
        f, lr, p = (jnp.asarray(a, jnp.float64) for a in (fused, lrms, pan))
        f, lr, p = _to_dn(f, lr, p, float(max_dn))
        values = _to_python(full_metrics_dn(f, lr, p, gains, ratio, block))
    hqnr_keys, qnr_keys = ("D_lambda_K", "D_S", "HQNR"), ("D_lambda", "QNR")
    order = qnr_keys + hqnr_keys if flag_qnr else hqnr_keys + qnr_keys
    return {k: values[k] for k in order}

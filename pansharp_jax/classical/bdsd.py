"""BDSD: band-dependent spatial detail (Garzelli, Nencini and Capobianco, TGRS 2008).

Reproduces the toolbox's ``BDSD/BDSD.m`` (Vivone et al., as shipped in DLPan-Toolbox).

The model: each fused band is the upsampled MS band plus a linear combination, with
band-dependent weights, of all upsampled MS bands and the PAN::

    fused_k = ms_k + sum_j g[j, k] * ms_j + g[C, k] * pan        (per block)

The ``C + 1`` weights of every band are estimated at reduced resolution, where the
"true" MS is known, by least squares:

  1. ``pan_lp_d``: the PAN filtered with its MTF (``MTF_PAN``) and sampled at rows and
     columns ``2, 2 + ratio, ...`` (0-based; the toolbox's ``3:ratio:end``).
  2. ``ms_orig``: the *upsampled* MS brought back to the MS grid by MATLAB's
     ``imresize(I_MS, 1/ratio)`` (bicubic, antialiased) -- not the original LRMS.
  3. ``ms_lp_d``: ``ms_orig`` filtered with the MS MTF (``MTF``) for the same ratio,
     at the reduced grid (no further decimation): the degraded version of ``ms_orig``.
  4. In each block, with ``Hd = [ms_lp_d_1 .. ms_lp_d_C, pan_lp_d]`` (pixels x (C+1)),
     ``g[:, k] = argmin || Hd g - (ms_orig_k - ms_lp_d_k) ||`` (no intercept), i.e. the
     toolbox's ``(Hd'Hd) \\ Hd' (b - bd)``.
  5. Each full-resolution block (``S x S``) is fused with the weights of the matching
     reduced block (``S/ratio x S/ratio``): the toolbox's two ``blockproc`` calls.

Block size (``S`` in the toolbox). The toolbox's reduced-resolution demo (Vivone's
toolbox, whose ``BDSD.m`` DLPan-Toolbox ships; DLPan's own demo runs BDSD-PC instead)
calls ``BDSD(I_MS, I_PAN, ratio, size(I_MS,1), sensor)``: one block as tall as the
image, i.e. a single global estimate for a square image. :func:`bdsd` does that (one
block covering the whole image, whatever its shape). ``BDSD.m``'s help suggests
"typically 128x128" local blocks: :func:`bdsd_blocks` returns a fuse for any block size
``S``; like the toolbox it raises :class:`~pansharp_jax.errors.InputError` when ``S``
is odd, not a multiple of ``ratio``, or does not divide the PAN height and width
(no silent fallback), and also when a reduced block has fewer pixels than the
``C + 1`` unknowns (MATLAB would return a rank-deficient, warning-laden answer).

Implementation notes and deviations:
  * The least squares are solved by a QR factorisation of ``Hd`` instead of the
    toolbox's normal equations: same solution in exact arithmetic, but accurate in
    float32 too (``Hd'Hd`` squares the condition number of strongly correlated bands).
  * Sampling phase: the toolbox's ``3:ratio:end`` (offset 2) is kept for every ratio
    >= 3. For ratio 2 it would give one sample too few per axis and ``BDSD.m`` fails;
    we use offset ``ratio - 1`` there (i.e. 1, the usual ``ratio // 2`` phase).
  * PAN MTF gain: ``MTF_PAN.m`` knows only QB, IKONOS, GeoEye1/WV4, WV2, WV3 and
    ``'none'`` (no ``otherwise`` branch, so e.g. Pleiades or GF2 stop with an error in
    MATLAB); we take the gain of :mod:`pansharp_jax.data.sensors` (0.15 for those).
  * Blocks are processed all at once (reshape + batched QR), not in a loop. The
    toolbox also needs ``S >= C + 1`` (it pads each block's ``(C+1) x C`` weights to
    ``S x S`` to pass them through ``blockproc``); that limit does not exist here.

Scale: every step is linear in the data and the weights ``g`` are ratios of data, so
the method is scale-equivariant (DN in, DN out; [0, 1] in, [0, 1] out). It uses the
sensor's MS and PAN Nyquist gains (``sensor``); the output is not clipped.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from pansharp_jax.classical._common import Fuse, check_inputs, classical_method
from pansharp_jax.data import wald
from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.data.sensors import Sensor, get_sensor
from pansharp_jax.errors import InputError

#: Default block size: ``None`` = one block over the whole image (the toolbox demo's
#: ``size(I_MS, 1)`` on a square image, i.e. global estimation).
DEFAULT_BLOCK_SIZE: int | None = None


def _pan_phase(ratio: int) -> int:
    """0-based first sample of the toolbox's ``pan_LP(3:ratio:end, 3:ratio:end)``."""
    return min(2, ratio - 1)


def _check_blocks(shape: tuple[int, ...], nbands: int, block_size: int, ratio: int) -> None:
    """The toolbox's block-size preconditions, plus enough samples for C + 1 unknowns."""
    h, w = shape[0], shape[1]
    s = block_size
    if s % 2:
        raise InputError(f"bdsd: block size for local estimation must be even, got {s}")
    if s % ratio:
        raise InputError(f"bdsd: block size {s} must be a multiple of the ratio {ratio}")
    if h % s or w % s:
        raise InputError(
            f"bdsd: PAN size {h}x{w} must be a multiple of the block size {s} "
            f"(use bdsd_blocks(None) for a single global estimate)"
        )
    if (s // ratio) ** 2 < nbands + 1:
        raise InputError(
            f"bdsd: block size {s} gives {(s // ratio) ** 2} reduced-resolution pixels per block, "
            f"fewer than the {nbands + 1} coefficients to estimate per band"
        )


def _lstsq_qr(a: jax.Array, b: jax.Array) -> jax.Array:
    """Least-squares solution of ``a x = b`` via reduced QR (batched over leading dims).

    a: (..., n, p) with n >= p and full column rank; b: (..., n, q) -> x: (..., p, q).
    """
    q, r = jnp.linalg.qr(a, mode="reduced")
    return jsl.solve_triangular(r, jnp.swapaxes(q, -1, -2) @ b, lower=False)


def _to_blocks(x: jax.Array, bh: int, bw: int) -> jax.Array:
    """(H, W, K) -> (H/bh, W/bw, bh*bw, K): non-overlapping bh x bw blocks, pixels flattened."""
    h, w, k = x.shape
    x = x.reshape(h // bh, bh, w // bw, bw, k).transpose(0, 2, 1, 3, 4)
    return x.reshape(h // bh, w // bw, bh * bw, k)


def bdsd_core(
    lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int, block_size: int | None
) -> jax.Array:
    """BDSD on one image.

    Args:
      lms: (H, W, C) upsampled MS (interp23tap), any scale.
      pan: (H, W, 1) PAN, same scale.
      lrms: unused (the toolbox re-derives the MS grid from ``lms`` with ``imresize``).
      sensor: gives the MS and PAN MTF Nyquist gains.
      ratio: PAN/MS scale ratio.
      block_size: ``S`` (PAN pixels per block side) or ``None`` for one global block.

    Returns:
      (H, W, C) fused image, same scale and dtype as ``lms``.
    """
    del lrms
    h, w, c = lms.shape
    if block_size is None:
        bh, bw = h, w
        if (h // ratio) * (w // ratio) < c + 1:
            raise InputError(f"bdsd: image too small ({h}x{w}) to estimate {c + 1} coefficients per band")
    else:
        _check_blocks(lms.shape, c, int(block_size), ratio)
        bh = bw = int(block_size)

    # Reduced-resolution triplet (toolbox: pan_LP_d, ms_orig, ms_LP_d).
    o = _pan_phase(ratio)
    pan_lp_d = wald.mtf_filter_pan(pan, sensor, ratio)[o::ratio, o::ratio, :]
    ms_orig = imresize_bicubic(lms, 1.0 / ratio)
    ms_lp_d = wald.mtf_filter(ms_orig, sensor.gains(c), ratio)

    # Per-block least squares at reduced resolution: gamma (nbh, nbw, C+1, C).
    hd = _to_blocks(jnp.concatenate([ms_lp_d, pan_lp_d], axis=-1), bh // ratio, bw // ratio)
    target = _to_blocks(ms_orig - ms_lp_d, bh // ratio, bw // ratio)
    gamma = _lstsq_qr(hd, target)

    # Injection at full resolution, block (i, j) with gamma[i, j].
    full = jnp.concatenate([lms, pan], axis=-1).reshape(h // bh, bh, w // bw, bw, c + 1)
    detail = jnp.einsum("iajbk,ijkc->iajbc", full, gamma).reshape(h, w, c)
    return (lms + detail).astype(lms.dtype)


def _check_before_tracing(lrms: Any, pan: Any, sensor: Any, ratio: Any, block_size: int | None, name: str) -> None:
    """Raise the shape / block-size / band-count errors before ``jit`` traces (clean messages)."""
    ratio = int(ratio)
    lr_shape, pan_shape = tuple(np.shape(lrms)), tuple(np.shape(pan))
    if len(pan_shape) == len(lr_shape) - 1:
        pan_shape = (*pan_shape, 1)
    # shape-only stand-ins: check_inputs looks at shapes, not values
    check_inputs(np.broadcast_to(np.float32(0), lr_shape), np.broadcast_to(np.float32(0), pan_shape), ratio, name)
    h, w, c = ratio * lr_shape[-3], ratio * lr_shape[-2], lr_shape[-1]
    get_sensor(sensor).gains(c)
    if block_size is None:
        if (h // ratio) * (w // ratio) < c + 1:
            raise InputError(f"{name}: image too small ({h}x{w}) to estimate {c + 1} coefficients per band")
    else:
        _check_blocks((h, w), c, block_size, ratio)


@functools.lru_cache(maxsize=16)
def bdsd_blocks(block_size: int | None) -> Fuse:
    """The BDSD ``fuse`` with local estimation on ``block_size x block_size`` PAN blocks.

    ``bdsd_blocks(None)`` is :func:`bdsd` (one global block); ``bdsd_blocks(128)`` is
    the ``S = 128`` of ``BDSD.m``'s help. The block size must be even, a multiple of
    ``ratio`` and divide the PAN height and width, else :class:`InputError` is raised
    when fusing. Cached: the same size returns the same (already compiled) function.
    """
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise InputError(f"bdsd: block size must be a positive integer or None, got {block_size!r}")
    name = "bdsd" if block_size is None else f"bdsd_s{block_size}"

    def core(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
        return bdsd_core(lms, pan, lrms, sensor=sensor, ratio=ratio, block_size=block_size)

    core.__name__ = name
    core.__doc__ = f"BDSD on one image, block size {block_size if block_size else 'global'}."
    inner = classical_method(name)(core)

    @functools.wraps(inner)
    def fuse(
        params: Any, lrms: Any, pan: Any, *, rng: Any = None, sensor: str | Sensor | None = "generic", ratio: int = 4
    ) -> jax.Array:
        if params is None:  # else ``inner`` names the params error
            _check_before_tracing(lrms, pan, sensor, ratio, block_size, name)
        return inner(params, lrms, pan, rng=rng, sensor=sensor, ratio=ratio)

    fuse.core = core  # type: ignore[attr-defined]
    fuse.block_size = block_size  # type: ignore[attr-defined]
    return fuse


#: BDSD with the default (global) estimation; see the module docstring. Built by
#: ``classical_method("bdsd")`` (inside :func:`bdsd_blocks`) like every method.
bdsd: Fuse = bdsd_blocks(DEFAULT_BLOCK_SIZE)

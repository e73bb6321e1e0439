"""The classical methods tile by tile: whole-image statistics as streamed sums, equal to the
whole-scene ``fuse`` (to rounding) on every pixel.

Almost every classical method mixes local filters with WHOLE-IMAGE statistics (band means
and standard deviations, covariances, least-squares regressions, PCA axes, percentiles).
A scene of 40,000 px a side is fused window by window (:mod:`pansharp_jax.data.tiling`):
the statistics are collected in ``passes`` passes over the windows, each window
returning SUMS over its core pixels (so that the sums of all windows are the sums over the
scene, whatever the order), then every window is fused with the finished statistics.

The protocol (:class:`StreamingMethod`)::

    m = streaming_method("gsa", sensor="WV2", ratio=4)
    plan = plan_tiles(H, W, tile=..., margin=m.margin, align=ratio)
    stats = None
    for k in range(m.passes):
        sums = sum over windows (leaf-wise) of m.gather(k, lms, pan, lrms, mask, stats, origin=, scene=)
        stats = m.finish(k, sums, stats)
    for each window: fused = m.apply(lms, pan, lrms, stats, origin=, scene=); write its core

with, per window ``[r0, r1) x [c0, c1)`` (PAN px): ``pan = pan[r0:r1, c0:c1]``,
``lrms = lrms[r0//ratio : r1//ratio, c0//ratio : c1//ratio]``, ``mask`` the
(r1 - r0, c1 - c0) float64 core indicator (1 on the core, 0 elsewhere; a driver may also
put 0 on nodata pixels to leave them out of the statistics), ``origin = (r0, c0)`` and
``scene = (H, W)`` (static; both may be omitted except for the MTF-GLP family, see
:attr:`StreamingMethod.needs_position`), ``lms`` from :func:`window_lms` (below).
:func:`fuse_tiled` is the in-memory reference driver.

**The upsampled MS and the circular border.** The toolbox's ``interp23tap`` (and our
``interp_general``) filter with a CIRCULAR boundary: near the scene border the whole-scene
``lms`` mixes in the opposite border of the scene, which a window at the border does not
hold. So ``lms`` of a window is NOT ``upsample_ms(lrms_window)``: it is the upsampling of
the LR window extended by ``halo`` LR pixels on every side with wrapped (modulo the scene)
indices, cropped back (:func:`extended_lr_index` gives the rows/columns to read,
:func:`window_lms` upsamples and crops; ``halo`` = :func:`lr_halo`). The MTF-GLP family
re-interpolates a decimated PAN with the same interpolator; for those, pass 0 also
collects the decimated MTF-filtered PAN in four border strips of ``halo`` LR pixels (an
LR-scale array of ``2 halo (h + w)`` pixels per distinct MTF gain, taken where the mask
is > 0: the only non-small statistic, unavoidable for exactness; 2 x 25 MB for a
40,000 px WV3 scene), and :meth:`StreamingMethod.apply` uses them
(with ``origin`` and ``scene``) to wrap the low-pass around the scene like the whole-scene
computation does.

**Margins** (PAN px of context per side, derived below from the filters; rounded up to a
multiple of ``ratio``; ratio 4 figures in brackets). ``I`` = reach of the interpolator
(11 taps a side per x2 stage: ``11 (ratio - 1)`` for powers of two [33], ``11 ratio``
for ``interp_general``) + ``ratio``: ``lms`` of a window is exact that far from an
artificial window edge.

=====================  ======  ===========================================================
method                 passes  margin
=====================  ======  ===========================================================
EXP, GS, PCA           0/1/1   ``I`` [40]
GSA                    1       max(``I``, wavelet ``4 ceil(log2 ratio)`` + ratio) [40]
BT-H                   4       max(``I``, LPfilterGauss 20 + ratio) [40]
MTF-GLP, -HPM, -HPM-G  1       max(``I``, 20 + ratio, 33 + ratio + MTF 20 + ratio) [64]
MTF-GLP-FS             2       as MTF-GLP [64]
AWLP                   1       max(``I``, bicubic down-up + ratio, wavelet + ratio) [40]
PRACS                  3       ``I`` + bicubic down-up + ratio [60]
BDSD                   1       ``I`` + bicubic down + 20 LR px of MTF (= 20 ratio) + ratio [128]
=====================  ======  ===========================================================

**Statistics per method** (``n`` = sum of the mask; sums are weighted by the mask, on the
PAN grid, or by ``mask[::ratio, ::ratio]`` on the LR grid; covariances from sums as
``(sum xy - sum x sum y / n) / (n - 1)``):

* GS, PCA: sums and the Gram matrix of ``[lms, pan]``. GS: the gains
  ``cov(I0, lms_k) / var(I0) = (Cov a)_k / a' Cov a`` with ``a = 1/C``; PCA: the
  loadings from ``eigh`` of the ``lms`` covariance (same helper as :func:`pca`).
* GSA: sums and Gram of ``[lms, pan]`` (PAN grid) and of ``[lrms, pan_lr]`` (LR grid,
  ``pan_lr`` the wavelet low-pass of the PAN, decimated). The regression with intercept
  gives the same weights from the centred normal equations ``Cov(lrms) w =
  Cov(lrms, pan_lr)`` (the intercept and the PAN mean drop out of ``I0``); the whole-
  scene code solves ``lstsq`` (SVD) on the design instead.
* BT-H: Gram of ``lms`` and ``lms' pan_lp`` for the no-intercept regression (normal
  equations instead of ``lstsq``), sums of ``pan_lp``; the haze (1st percentile for
  4 bands, else the minimum of each ``lms`` band) is found EXACTLY by a radix
  selection on the order-preserving 64-bit key of every float64 value: pass ``k``
  (0..3) counts, per band and wanted rank, the values whose key agrees with the
  already pinned top ``16 k`` bits in 65,536 bins of the next 16 bits (sums of counts:
  a (ranks, C, 65536) histogram); after 4 passes the key, hence the value, of each wanted
  order statistic is pinned (MATLAB's ``prctile`` interpolates the ranks ``floor(pos)``
  and ``floor(pos) + 1``).
* MTF-GLP, -HPM, -HPM-G: band sums/squares of ``lms``, sums of ``pan``, sums/squares of
  ``LPfilterGauss(pan)`` (plus ``sum |lms|`` for the guard) and the border strips of
  ``decimate(MTF_b(pan))``; the equalised PAN is affine in the PAN, so the strips of
  ``decimate(MTF_b(P_b))`` are ``a_b d_b + c_b K_b`` (``K_b`` the kernel's DC gain).
* MTF-GLP-FS: pass 0 as above (strips of ``decimate(MTF_b(pan))``), pass 1 the sums of
  ``P_L,b`` and ``P_L,b pan`` for ``cov(P_L,b, P)``.
* AWLP: band sums/squares of ``lms``, sums of ``pan``, sums/squares of the bicubic
  down-up PAN.
* PRACS: pass 0 means/stds of ``lms`` and ``pan``; pass 1 the Gram of ``[hm, P_l,
  lms]`` (``hm`` the histogram-matched bands, ``P_l`` the bicubic low-pass PAN): the
  regression of ``P_l`` on ``[1, hm]`` (centred normal equations) and every
  correlation of the intensity ``I_l`` follow from it; pass 2 the cross sums
  ``hm' lowpass(I_h)`` for the band-dependent regressions.
* BDSD (global, the ``METHODS`` entry): ``Hd' Hd`` and ``Hd' (ms_orig - ms_lp_d)`` on
  the reduced grid; ``gamma`` solved from these normal equations (the toolbox's own
  formula; the whole-scene code uses QR).

Precision: every sum is float64. Moments from raw sums lose about ``log10(mean^2/var)``
digits, regressions from normal equations about ``log10 cond(X)^2``. On the [0, 1] scale
the tiled product equals the whole-scene one to <= 1e-11 on the synthetic test scenes
(BDSD, the worst-conditioned normal equations; <= 3e-13 for the others) and on the real
1280 x 1280 WV2 scene (``wv2_pnn``, tile 256) to <= 1e-11, except where a method divides
by a quantity near 0, which amplifies any rounding difference (a different summation
order, FFT size or moment formula): PRACS ~1e-9 to 2e-8 (its ``L_k`` divides by
``I_l'_k``; values up to ~70 there), and MTF-GLP-HPM 1.3e-6 absolute, 1.2e-9 relative, on
8 pixels where the toolbox's HPM divides by ``P_L ~ 4e-7`` and returns ~ -1000 (the
quirk documented in :mod:`pansharp_jax.classical.multiresolution`; the whole-scene value
itself is only defined to that precision; the guarded HPM: 4e-14). Everything here needs
``jax.enable_x64(True)`` (the radix keys are uint64); :func:`fuse_tiled` enables it itself.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.classical import component_substitution as _cs
from pansharp_jax.classical import multiresolution as _mr
from pansharp_jax.classical._common import check_inputs, upsample_ms
from pansharp_jax.classical.bdsd import _pan_phase
from pansharp_jax.classical.pracs import BETA as _PRACS_BETA
from pansharp_jax.classical.pracs import _low_pass as _pracs_low_pass
from pansharp_jax.data import wald
from pansharp_jax.data.resize import imresize_bicubic, resize_weights
from pansharp_jax.data.sensors import Sensor, get_sensor
from pansharp_jax.data.tiling import core_mask, plan_tiles
from pansharp_jax.errors import InputError

__all__ = [
    "StreamingMethod",
    "streaming_method",
    "fuse_tiled",
    "lr_halo",
    "interp_reach",
    "extended_lr_index",
    "window_lms",
    "STREAMING_METHODS",
]

PyTree = Any
Stats = dict[str, Any]

# --------------------------------------------------------------------------- geometry


def _is_pow2(ratio: int) -> bool:
    return ratio >= 1 and ratio & (ratio - 1) == 0


def interp_reach(ratio: int) -> int:
    """PAN px from an LR sample's position to the farthest ``upsample_ms`` output it touches.

    ``interp23tap``: 11 taps a side at each x2 stage, ``11 (1 + 2 + ... + ratio/2) =
    11 (ratio - 1)``; ``interp_general``: its FIR's half length, ``11 ratio``.
    """
    if _is_pow2(ratio):
        return (len(wald.CDF23) // 2) * (ratio - 1)
    return len(wald._general_taps(int(ratio))) // 2


def lr_halo(ratio: int) -> int:
    """LR px of wrapped context a window's LR arrays need on each side for ``upsample_ms``
    to give the whole-scene values on the window (its circular boundary)."""
    return math.ceil((interp_reach(ratio) + ratio) / ratio)


def extended_lr_index(
    window: tuple[int, int, int, int], scene: tuple[int, int], ratio: int
) -> tuple[np.ndarray, np.ndarray]:
    """LR rows and columns to read for a window's halo-extended LRMS.

    Args:
      window: ``(r0, r1, c0, c1)`` PAN px (multiples of ``ratio``).
      scene: ``(H, W)`` PAN px.
      ratio: PAN/MS ratio.

    Returns:
      ``(rows, cols)``: int64 LR indices ``(r0/ratio - halo + i) mod h`` and likewise for
      columns (``halo`` = :func:`lr_halo`), so ``lrms[np.ix_(rows, cols)]`` is the
      (hw + 2 halo, ww + 2 halo, C) input of :func:`window_lms`.
    """
    q = lr_halo(ratio)
    r0, r1, c0, c1 = (int(v) for v in window)
    h, w = int(scene[0]) // ratio, int(scene[1]) // ratio
    rows = np.mod(np.arange(r0 // ratio - q, r1 // ratio + q), h)
    cols = np.mod(np.arange(c0 // ratio - q, c1 // ratio + q), w)
    return rows, cols


def window_lms(lrms_ext: jax.Array, ratio: int) -> jax.Array:
    """A window's ``lms``: ``upsample_ms`` of its halo-extended LRMS, cropped to the window.

    lrms_ext: (hw + 2 halo, ww + 2 halo, C) from :func:`extended_lr_index`, any scale ->
    (ratio hw, ratio ww, C): the whole-scene ``lms`` on the window except within ``margin``
    of an edge that is not the scene's (exact on the core).
    """
    q = lr_halo(ratio) * ratio
    up = upsample_ms(lrms_ext, ratio)
    return up[q:-q, q:-q, :]


def _kernel_reach(kernel: np.ndarray) -> int:
    return int(kernel.shape[0]) // 2


def _mtf_reach(ratio: int) -> int:
    return _kernel_reach(wald.mtf_kernels([0.3], ratio))


def _wavelet_reach(ratio: int) -> int:
    """The toolbox's undecimated-wavelet approximation: ``levels`` analysis and as many
    synthesis 5-tap filters in a row, 2 px each (border handling is border-local)."""
    levels = int(np.ceil(np.log2(ratio))) if ratio > 1 else 0
    return 2 * levels * (len(_cs._B3_TAPS) // 2)


@functools.lru_cache(maxsize=16)
def _bicubic_reaches(ratio: int) -> tuple[int, int]:
    """``(down, up)``: PAN px beyond its block that an LR pixel of ``imresize(., 1/ratio)``
    reads, and LR px around its own that a PAN pixel of ``imresize(., ratio)`` reads
    (from the weights MATLAB's ``imresize`` uses, away from the border)."""
    n = 16
    _, idx = resize_weights(n * ratio, 1.0 / ratio)
    i = n // 2
    down = int(max(i * ratio - idx[i].min(), idx[i].max() - (i * ratio + ratio - 1)))
    _, idx_up = resize_weights(n, float(ratio))
    ys = np.arange(i * ratio, (i + 1) * ratio)
    up = int(np.abs(idx_up[ys] - i).max())
    return down, up


def _bicubic_downup_reach(ratio: int) -> int:
    down, up = _bicubic_reaches(ratio)
    return up * ratio + ratio + down


def _round_up(x: int, m: int) -> int:
    return -(-int(x) // m) * m


# --------------------------------------------------------------------------- sums


def _wsum(x: jax.Array, w: jax.Array) -> jax.Array:
    """sum over pixels of ``w x``: (H, W, K), (H, W) -> (K,)."""
    return jnp.sum(x * w[..., None], axis=(0, 1))


def _wcross(x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
    """sum over pixels of ``w x y'``: (H, W, K), (H, W, L), (H, W) -> (K, L)."""
    xw = (x * w[..., None]).reshape(-1, x.shape[-1])
    return xw.T @ y.reshape(-1, y.shape[-1])


def _moments(x: jax.Array, w: jax.Array) -> dict[str, jax.Array]:
    """Count, sums and Gram matrix of the K features of x (H, W, K) weighted by w (H, W)."""
    return {"n": jnp.sum(w), "s": _wsum(x, w), "g": _wcross(x, x, w)}


def _np(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _count(n: Any) -> float:
    """The summed mask weight (pixels in the statistics); InputError below 2."""
    n = float(n)
    if not n >= 2.0:
        raise InputError(f"whole-image statistics need at least 2 valid pixels, the masks hold {n:g}")
    return n


def _cov(n: float, sx: np.ndarray, sy: np.ndarray, sxy: np.ndarray) -> np.ndarray:
    """Sample covariance (n - 1) from sums: (K,), (L,), (K, L) -> (K, L)."""
    return (sxy - np.outer(sx, sy) / n) / (n - 1.0)


def _var(n: float, s: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """Sample variance (n - 1) per feature from sums and sums of squares."""
    return (ss - s * s / n) / (n - 1.0)


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normal equations ``a x = b`` (symmetric positive definite a, LU with pivoting)."""
    return np.linalg.solve(a, b)


# --------------------------------------------------------------------------- wrap halo


def _strip_sums(d: jax.Array, valid: jax.Array, origin_lr: jax.Array, scene_lr: tuple[int, int], q: int) -> Stats:
    """The window's core values of an LR quantity placed in the scene's four border strips.

    d: (hw, ww, K) LR window values; valid: (hw, ww) 1 on the core LR pixels; origin_lr:
    (2,) the window's top-left LR pixel; scene_lr: (h, w) static. Returns ``top`` (qr, w, K)
    (scene rows [0, qr)), ``bottom`` (rows [h - qr, h)), ``left`` (h, qc, K), ``right``,
    with ``qr = min(q, h)``, ``qc = min(q, w)``, zero where this window has no core pixel.
    Summed over the windows whose cores partition the scene, they are the strips.
    """
    hw, ww, k = d.shape
    h, w = scene_lr
    qr, qc = min(q, h), min(q, w)
    a, c = origin_lr[0], origin_lr[1]
    dv = d * valid[..., None]

    def rows(start: int) -> jax.Array:
        idx = start + jnp.arange(qr) - a
        ok = ((idx >= 0) & (idx < hw)).astype(d.dtype)
        part = jnp.take(dv, jnp.clip(idx, 0, hw - 1), axis=0) * ok[:, None, None]
        return jax.lax.dynamic_update_slice(jnp.zeros((qr, w, k), d.dtype), part, (0, c, 0))

    def cols(start: int) -> jax.Array:
        idx = start + jnp.arange(qc) - c
        ok = ((idx >= 0) & (idx < ww)).astype(d.dtype)
        part = jnp.take(dv, jnp.clip(idx, 0, ww - 1), axis=1) * ok[None, :, None]
        return jax.lax.dynamic_update_slice(jnp.zeros((h, qc, k), d.dtype), part, (a, 0, 0))

    return {"top": rows(0), "bottom": rows(h - qr), "left": cols(0), "right": cols(w - qc)}


def _assemble(win: jax.Array, strips: Stats, origin_lr: jax.Array, scene_lr: tuple[int, int], q: int) -> jax.Array:
    """The LR window extended by ``q`` wrapped pixels a side: (hw + 2q, ww + 2q, K).

    The window's own pixels come from ``win``; halo pixels (scene index modulo the scene)
    within the border strips come from ``strips``; any other halo pixel (never within
    reach of the core) repeats the nearest window pixel.
    """
    hw, ww, _ = win.shape
    h, w = scene_lr
    qr, qc = strips["top"].shape[0], strips["left"].shape[1]
    a, c = origin_lr[0], origin_lr[1]
    er, ec = jnp.arange(hw + 2 * q), jnp.arange(ww + 2 * q)
    rr, cc = jnp.mod(a - q + er, h), jnp.mod(c - q + ec, w)
    # By position, not by scene index: a halo row that wraps onto a row of the window
    # (near its far, artificial edge) must come from the strips.
    in_r, in_c = (er >= q) & (er < q + hw), (ec >= q) & (ec < q + ww)
    from_win = win[jnp.clip(er - q, 0, hw - 1)][:, jnp.clip(ec - q, 0, ww - 1)]
    top = strips["top"][jnp.clip(rr, 0, qr - 1)][:, cc]
    bottom = strips["bottom"][jnp.clip(rr - (h - qr), 0, qr - 1)][:, cc]
    left = strips["left"][rr][:, jnp.clip(cc, 0, qc - 1)]
    right = strips["right"][rr][:, jnp.clip(cc - (w - qc), 0, qc - 1)]
    out = from_win
    out = jnp.where((cc >= w - qc)[None, :, None], right, out)
    out = jnp.where((cc < qc)[None, :, None], left, out)
    out = jnp.where((rr >= h - qr)[:, None, None], bottom, out)
    out = jnp.where((rr < qr)[:, None, None], top, out)
    return jnp.where((in_r[:, None] & in_c[None, :])[..., None], from_win, out)


def _upsample_wrapped(
    win: jax.Array, strips: Stats, origin: jax.Array, scene: tuple[int, int], ratio: int
) -> jax.Array:
    """``upsample_ms`` of an LR quantity on a window as on the whole scene (circular border).

    win: (hw, ww, K) LR window; strips: its border strips (see :func:`_strip_sums`);
    origin: (2,) window top-left, PAN px; scene: (H, W) PAN px -> (ratio hw, ratio ww, K).
    """
    q = lr_halo(ratio)
    origin_lr = jnp.asarray(origin) // ratio
    ext = _assemble(win, strips, origin_lr, (scene[0] // ratio, scene[1] // ratio), q)
    return window_lms(ext, ratio)


# --------------------------------------------------------------------------- methods


@dataclasses.dataclass(frozen=True)
class _Impl:
    passes: int
    margin: int
    gather: Callable[..., PyTree] | None
    finish: Callable[..., PyTree] | None
    apply: Callable[..., jax.Array]
    positional: bool = False  # gather/apply use origin and scene


def _lms_margin(ratio: int) -> int:
    return interp_reach(ratio) + ratio


def _impl_exp(sensor: Sensor, ratio: int) -> _Impl:
    def apply(lms, pan, lrms, stats, origin, scene):  # noqa: ANN001, ANN202
        return lms

    return _Impl(0, _lms_margin(ratio), None, None, apply)


def _pan_moments_gather(lms: jax.Array, pan: jax.Array, mask: jax.Array) -> Stats:
    return _moments(jnp.concatenate([lms, pan], axis=-1), mask)


def _pan_moments_cov(sums: Stats) -> tuple[float, np.ndarray, int, np.ndarray]:
    """(n, sums, bands C, covariance (C+1, C+1)) of the moments of ``[lms, pan]``."""
    n, s, g = _count(sums["n"]), _np(sums["s"]), _np(sums["g"])
    return n, s, s.shape[0] - 1, _cov(n, s, s, g)


def _impl_gs(sensor: Sensor, ratio: int) -> _Impl:
    def gather(k, lms, pan, lrms, mask, stats, origin, scene):  # noqa: ANN001, ANN202
        return _pan_moments_gather(lms, pan, mask)

    def finish(k, sums, stats):  # noqa: ANN001, ANN202
        n, s, c, cov = _pan_moments_cov(sums)
        a = np.full(c, 1.0 / c)
        cov_ms = cov[:c, :c]
        var_i = a @ cov_ms @ a
        return {
            "mean_ms": s[:c] / n,
            "mean_p": s[c] / n,
            "scale": np.sqrt(var_i) / np.sqrt(cov[c, c]),
            "gains": cov_ms @ a / var_i,
        }

    def apply(lms, pan, lrms, st, origin, scene):  # noqa: ANN001, ANN202
        lms0 = lms - st["mean_ms"]
        i0 = jnp.mean(lms, axis=-1) - jnp.mean(st["mean_ms"])
        pan_eq = (pan[..., 0] - st["mean_p"]) * st["scale"]
        return lms0 + (pan_eq - i0)[..., None] * st["gains"] + st["mean_ms"]

    return _Impl(1, _lms_margin(ratio), gather, finish, apply)


def _impl_gsa(sensor: Sensor, ratio: int) -> _Impl:
    def gather(k, lms, pan, lrms, mask, stats, origin, scene):  # noqa: ANN001, ANN202
        full = _pan_moments_gather(lms, pan, mask)
        pan_lr = _cs.lp_filter_plus_dec(pan, ratio)
        low = _moments(jnp.concatenate([lrms, pan_lr], axis=-1), mask[::ratio, ::ratio])
        return {"full": full, "low": low}

    def finish(k, sums, stats):  # noqa: ANN001, ANN202
        f, lo = sums["full"], sums["low"]
        n, s, g = _count(f["n"]), _np(f["s"]), _np(f["g"])
        c = s.shape[0] - 1
        cov_lr = _cov(_count(lo["n"]), _np(lo["s"]), _np(lo["s"]), _np(lo["g"]))
        w = _solve(cov_lr[:c, :c], cov_lr[:c, c])
        cov_ms = _cov(n, s, s, g)[:c, :c]
        return {"mean_ms": s[:c] / n, "mean_p": s[c] / n, "w": w, "gains": cov_ms @ w / (w @ cov_ms @ w)}

    def apply(lms, pan, lrms, st, origin, scene):  # noqa: ANN001, ANN202
        lms0 = lms - st["mean_ms"]
        i0 = lms0 @ st["w"]
        return lms0 + ((pan[..., 0] - st["mean_p"]) - i0)[..., None] * st["gains"] + st["mean_ms"]

    margin = max(_lms_margin(ratio), _wavelet_reach(ratio) + ratio)
    return _Impl(1, margin, gather, finish, apply)


def _impl_pca(sensor: Sensor, ratio: int) -> _Impl:
    def gather(k, lms, pan, lrms, mask, stats, origin, scene):  # noqa: ANN001, ANN202
        return _pan_moments_gather(lms, pan, mask)

    def finish(k, sums, stats):  # noqa: ANN001, ANN202
        n, s, c, cov = _pan_moments_cov(sums)
        loadings = np.asarray(_cs.pca_loadings_from_cov(jnp.asarray(cov[:c, :c])), np.float64)
        var_first = loadings[:, 0] @ cov[:c, :c] @ loadings[:, 0]
        return {
            "mean_ms": s[:c] / n,
            "mean_p": s[c] / n,
            "loadings": loadings,
            "scale": np.sqrt(var_first) / np.sqrt(cov[c, c]),
        }

    def apply(lms, pan, lrms, st, origin, scene):  # noqa: ANN001, ANN202
        w = st["loadings"]
        scores = (lms - st["mean_ms"]) @ w
        pan_eq = (pan[..., 0] - st["mean_p"]) * st["scale"]
        return scores.at[..., 0].set(pan_eq) @ w.T + st["mean_ms"]

    return _Impl(1, _lms_margin(ratio), gather, finish, apply)


# ---- BT-H, with the exact radix selection of order statistics

_DIGIT_BITS = 16
_RADIX_PASSES = 64 // _DIGIT_BITS
_TOP_BIT = 1 << 63


def _float_keys(x: jax.Array) -> jax.Array:
    """float64 -> uint64 keys in the same order (negatives flipped, positives offset)."""
    b = jax.lax.bitcast_convert_type(x.astype(jnp.float64), jnp.uint64)
    top = jnp.uint64(_TOP_BIT)
    return jnp.where(b >= top, ~b, b | top)


def _key_to_float(key: np.ndarray) -> np.ndarray:
    key = np.asarray(key, np.uint64)
    top = np.uint64(_TOP_BIT)
    return np.where(key >= top, key ^ top, ~key).view(np.float64)


def _radix_histogram(x: jax.Array, valid: jax.Array, k: int, prefix: jax.Array | None, targets: int) -> jax.Array:
    """Pass ``k`` of the radix selection: (targets, C, 2**16) counts of the ``k``-th 16-bit
    digit of the keys of x (N, C) among the valid pixels whose higher digits equal
    ``prefix`` (targets, C) (no condition in pass 0)."""
    keys = _float_keys(x)
    shift = 64 - _DIGIT_BITS * (k + 1)
    digit = ((keys >> jnp.uint64(shift)) & jnp.uint64((1 << _DIGIT_BITS) - 1)).astype(jnp.int32)
    n, c = x.shape
    if prefix is None:
        match = jnp.ones((targets, n, c), x.dtype)
    else:
        match = ((keys[None] >> jnp.uint64(shift + _DIGIT_BITS)) == prefix[:, None, :]).astype(x.dtype)
    weight = valid[None, :, None] * match
    t_idx = jnp.arange(targets)[:, None, None]
    c_idx = jnp.arange(c)[None, None, :]
    hist = jnp.zeros((targets, c, 1 << _DIGIT_BITS), x.dtype)
    return hist.at[t_idx, c_idx, digit[None]].add(weight)


def _radix_refine(hist: np.ndarray, prefix: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pin the next digit of each wanted order statistic: the bin where the cumulative count
    reaches its (1-based) rank; the rank becomes the rank within that bin."""
    cum = np.cumsum(hist, axis=-1)
    digit = np.argmax(cum >= rank[..., None], axis=-1)
    below = np.where(digit > 0, np.take_along_axis(cum, np.maximum(digit - 1, 0)[..., None], axis=-1)[..., 0], 0.0)
    new_prefix = (prefix.astype(np.uint64) << np.uint64(_DIGIT_BITS)) | digit.astype(np.uint64)
    return new_prefix, rank - below


def _impl_bt_h(sensor: Sensor, ratio: int) -> _Impl:
    def gather(k, lms, pan, lrms, mask, stats, origin, scene):  # noqa: ANN001, ANN202
        h, w, c = lms.shape
        targets = 2 if c == 4 else 1
        valid = (mask > 0).astype(lms.dtype).reshape(h * w)
        prefix = None if k == 0 else stats["prefix"]
        out = {"hist": _radix_histogram(lms.reshape(h * w, c), valid, k, prefix, targets)}
        if k == 0:
            pan_lp = _cs.lp_filter_gauss(pan, ratio)
            out["ms"] = _moments(lms, mask)
            out["ms_lp"] = _wsum(lms * pan_lp, mask)
            out["lp"] = _wsum(jnp.concatenate([pan_lp, pan_lp * pan_lp], axis=-1), mask)
        return out

    def finish(k, sums, stats):  # noqa: ANN001, ANN202
        hist = _np(sums["hist"])
        if k == 0:
            ms = sums["ms"]
            n, s, g = _count(ms["n"]), _np(ms["s"]), _np(ms["g"])
            c = s.shape[0]
            w = _solve(g, _np(sums["ms_lp"]))
            lp = _np(sums["lp"])
            cov_ms = _cov(n, s, s, g)
            count = int(round(hist[0, 0].sum()))
            if c == 4:
                pos = min(max(count * _cs._HAZE_PRCTILE / 100.0 + 0.5, 1.0), float(count))
                lo = int(np.floor(pos))
                ranks, frac = np.array([lo, min(lo + 1, count)], np.float64), pos - lo
            else:
                ranks, frac = np.array([1.0]), 0.0
            stats = {
                "w": w,
                "mean_ms": s / n,
                "mean_lp": lp[0] / n,
                "scale": np.sqrt(w @ cov_ms @ w) / np.sqrt(_var(n, lp[0], lp[1])),
                "frac": frac,
                "prefix": np.zeros((len(ranks), c), np.uint64),
                "rank": np.broadcast_to(ranks[:, None], (len(ranks), c)).copy(),
            }
        stats = dict(stats)
        stats["prefix"], stats["rank"] = _radix_refine(hist, stats["prefix"], stats["rank"])
        if k == _RADIX_PASSES - 1:
            v = _key_to_float(stats.pop("prefix"))
            del stats["rank"]
            c = v.shape[1]
            if c == 4:
                haze = np.asarray(_cs._HAZE_COEFFS_4) * (v[0] + stats["frac"] * (v[1] - v[0]))
            else:
                haze = v[0]
            stats["haze"] = haze
            stats["mean_i"] = stats["w"] @ (stats["mean_ms"] - haze)
        return stats

    def apply(lms, pan, lrms, st, origin, scene):  # noqa: ANN001, ANN202
        haze = st["haze"]
        intensity = jnp.sum((lms - haze) * st["w"], axis=-1)
        pan_eq = (pan[..., 0] - st["mean_lp"]) * st["scale"] + st["mean_i"]
        return jnp.maximum(lms - haze, 0.0) * (pan_eq / (intensity + _cs._MATLAB_EPS))[..., None] + haze

    margin = max(_lms_margin(ratio), _kernel_reach(_cs._lp_gauss_kernel(ratio)) + ratio)
    return _Impl(_RADIX_PASSES, margin, gather, finish, apply)


# ---- MTF-GLP family


def _gain_groups(sensor: Sensor, c: int) -> tuple[tuple[float, ...], np.ndarray]:
    """The distinct MTF gains of a C-band image and each band's index among them."""
    gains = sensor.gains(c)
    unique = tuple(dict.fromkeys(gains))
    return unique, np.array([unique.index(g) for g in gains])


def _glp_margin(ratio: int) -> int:
    lpg = _kernel_reach(_mr._lpgauss_kernel(ratio)) + ratio
    glp = interp_reach(ratio) + ratio + _mtf_reach(ratio) + ratio
    return max(_lms_margin(ratio), lpg, glp)


def _pan_strips(
    pan: jax.Array, mask: jax.Array, origin: jax.Array, scene: tuple[int, int], sensor: Sensor, ratio: int, c: int
) -> Stats:
    """Border strips of ``decimate(MTF_g(pan))`` for the distinct gains ``g``."""
    unique, _ = _gain_groups(sensor, c)
    d = wald.decimate(wald.mtf_filter(jnp.broadcast_to(pan, (*pan.shape[:2], len(unique))), unique, ratio), ratio)
    valid = (mask[::ratio, ::ratio] > 0).astype(pan.dtype)
    return _strip_sums(d, valid, jnp.asarray(origin) // ratio, (scene[0] // ratio, scene[1] // ratio), lr_halo(ratio))


def _impl_glp(variant: str, sensor: Sensor, ratio: int) -> _Impl:
    """MTF-GLP (``variant`` 'add'), -HPM ('hpm') and the guarded HPM ('guard')."""

    def gather(k, lms, pan, lrms, mask, stats, origin, scene):  # noqa: ANN001, ANN202
        lp = _mr._lpgauss(pan, ratio)
        out = {
            "n": jnp.sum(mask),
            "ms": _wsum(jnp.concatenate([lms, lms * lms], axis=-1), mask),
            "pan": _wsum(pan, mask),
            "lp": _wsum(jnp.concatenate([lp, lp * lp], axis=-1), mask),
            "strips": _pan_strips(pan, mask, origin, scene, sensor, ratio, lms.shape[-1]),
        }
        if variant == "guard":
            out["abs"] = _wsum(jnp.abs(lms), mask)
        return out

    def finish(k, sums, stats):  # noqa: ANN001, ANN202
        n = _count(sums["n"])
        ms, lp = _np(sums["ms"]), _np(sums["lp"])
        c = ms.shape[0] // 2
        std_lp = np.sqrt(_var(n, lp[0], lp[1]))
        out = {
            "mean_ms": ms[:c] / n,
            "std_ms": np.sqrt(_var(n, ms[:c], ms[c:])),
            "mean_p": _np(sums["pan"])[0] / n,
            "strips": {key: _np(v) for key, v in sums["strips"].items()},
        }
        if variant == "guard":
            tiny = np.finfo(np.float64).tiny
            out["std_lp"] = max(std_lp, tiny)
            out["tau"] = _mr._HPM_FLOOR * _np(sums["abs"]) / n + tiny
        else:
            out["std_lp"] = std_lp
        return out

    def apply(lms, pan, lrms, st, origin, scene):  # noqa: ANN001, ANN202
        c = lms.shape[-1]
        gains = sensor.gains(c)
        _, gidx = _gain_groups(sensor, c)
        dc = wald.mtf_kernels(gains, ratio).sum(axis=(0, 1))
        slope = st["std_ms"] / st["std_lp"]
        p_eq = (pan - st["mean_p"]) * slope + st["mean_ms"]
        d_win = wald.decimate(wald.mtf_filter(p_eq, gains, ratio), ratio)
        offset = st["mean_ms"] - slope * st["mean_p"]
        strips = {key: v[..., gidx] * slope + offset * dc for key, v in st["strips"].items()}
        p_low = _upsample_wrapped(d_win, strips, origin, scene, ratio)
        if variant == "add":
            return lms + p_eq - p_low
        if variant == "hpm":
            return lms * (p_eq / (p_low + _mr._EPS))
        return lms + (lms / jnp.maximum(p_low, st["tau"])) * (p_eq - p_low)

    return _Impl(1, _glp_margin(ratio), gather, finish, apply, positional=True)


def _impl_glp_fs(sensor: Sensor, ratio: int) -> _Impl:
    def p_low(pan, c, strips, origin, scene):  # noqa: ANN001, ANN202
        unique, gidx = _gain_groups(sensor, c)
        d = wald.decimate(wald.mtf_filter(jnp.broadcast_to(pan, (*pan.shape[:2], len(unique))), unique, ratio), ratio)
        return _upsample_wrapped(d, strips, origin, scene, ratio)[..., gidx]

    def gather(k, lms, pan, lrms, mask, stats, origin, scene):  # noqa: ANN001, ANN202
        if k == 0:
            return {
                "n": jnp.sum(mask),
                "ms": _wsum(jnp.concatenate([lms, lms * pan], axis=-1), mask),
                "pan": _wsum(pan, mask),
                "strips": _pan_strips(pan, mask, origin, scene, sensor, ratio, lms.shape[-1]),
            }
        low = p_low(pan, lms.shape[-1], stats["strips"], origin, scene)
        # separate sums: a concatenation here makes XLA:CPU several times slower
        return {"low": _wsum(low, mask), "low_pan": _wsum(low * pan, mask)}

    def finish(k, sums, stats):  # noqa: ANN001, ANN202
        if k == 0:
            return {
                "n": _count(sums["n"]),
                "ms": _np(sums["ms"]),
                "pan": float(_np(sums["pan"])[0]),
                "strips": {key: _np(v) for key, v in sums["strips"].items()},
            }
        n, ms, sp = stats["n"], stats["ms"], stats["pan"]
        c = ms.shape[0] // 2
        cov_ms = ms[c:] - ms[:c] * sp / n
        cov_low = _np(sums["low_pan"]) - _np(sums["low"]) * sp / n
        return {"strips": stats["strips"], "gains": cov_ms / cov_low}

    def apply(lms, pan, lrms, st, origin, scene):  # noqa: ANN001, ANN202
        low = p_low(pan, lms.shape[-1], st["strips"], origin, scene)
        return lms + st["gains"] * (pan - low)

    return _Impl(2, _glp_margin(ratio), gather, finish, apply, positional=True)


def _impl_awlp(sensor: Sensor, ratio: int) -> _Impl:
    def gather(k, lms, pan, lrms, mask, stats, origin, scene):  # noqa: ANN001, ANN202
        pan_lr = imresize_bicubic(imresize_bicubic(pan, 1.0 / ratio), float(ratio))
        return {
            "n": jnp.sum(mask),
            "ms": _wsum(jnp.concatenate([lms, lms * lms], axis=-1), mask),
            "pan": _wsum(jnp.concatenate([pan, pan_lr, pan_lr * pan_lr], axis=-1), mask),
        }

    def finish(k, sums, stats):  # noqa: ANN001, ANN202
        n, ms, p = _count(sums["n"]), _np(sums["ms"]), _np(sums["pan"])
        c = ms.shape[0] // 2
        return {
            "mean_ms": ms[:c] / n,
            "std_ms": np.sqrt(_var(n, ms[:c], ms[c:])),
            "mean_p": p[0] / n,
            "std_lr": np.sqrt(_var(n, p[1], p[2])),
        }

    def apply(lms, pan, lrms, st, origin, scene):  # noqa: ANN001, ANN202
        nb = lms.shape[-1]
        intensity_ratio = lms / (jnp.sum(lms, axis=-1, keepdims=True) / nb + _mr._EPS)
        p_eq = (pan - st["mean_p"]) * (st["std_ms"] / st["std_lr"]) + st["mean_ms"]
        levels = max(int(math.ceil(math.log2(ratio))), 0)
        details = p_eq - _mr._awlp_approximation(p_eq, levels)
        return details * intensity_ratio + lms

    margin = max(_lms_margin(ratio), _bicubic_downup_reach(ratio) + ratio, _wavelet_reach(ratio) + ratio)
    return _Impl(1, margin, gather, finish, apply)


def _impl_pracs(sensor: Sensor, ratio: int) -> _Impl:
    def matched(lms, st):  # noqa: ANN001, ANN202
        return jnp.maximum((lms - st["mean_ms"]) * st["hm_scale"] + st["mean_p"], 0.0)

    def gather(k, lms, pan, lrms, mask, stats, origin, scene):  # noqa: ANN001, ANN202
        if k == 0:
            return {
                "n": jnp.sum(mask),
                "ms": _wsum(jnp.concatenate([lms, lms * lms], axis=-1), mask),
                "pan": _wsum(jnp.concatenate([pan, pan * pan], axis=-1), mask),
            }
        hm = matched(lms, stats)
        if k == 1:
            return _moments(jnp.concatenate([hm, _pracs_low_pass(pan, ratio), lms], axis=-1), mask)
        i_h = stats["cc"] * pan + (1.0 - stats["cc"]) * hm
        i_h_low = _pracs_low_pass(i_h, ratio)
        return {"s": _wsum(i_h_low, mask), "x": _wcross(hm, i_h_low, mask)}

    def finish(k, sums, stats):  # noqa: ANN001, ANN202
        if k == 0:
            n, ms, p = _count(sums["n"]), _np(sums["ms"]), _np(sums["pan"])
            c = ms.shape[0] // 2
            std_ms, std_p = np.sqrt(_var(n, ms[:c], ms[c:])), np.sqrt(_var(n, p[0], p[1]))
            return {"n": n, "mean_ms": ms[:c] / n, "mean_p": p[0] / n, "std_ms": std_ms, "hm_scale": std_p / std_ms}
        st = dict(stats)
        n = st["n"]
        if k == 1:
            s, g = _np(sums["s"]), _np(sums["g"])
            c = (s.shape[0] - 1) // 2
            cov = _cov(n, s, s, g)
            cov_hm, cov_hm_pl, cov_hm_ms = cov[:c, :c], cov[:c, c], cov[:c, c + 1 :]
            coef0 = _solve(cov_hm, cov_hm_pl)
            var_il = coef0 @ cov_hm @ coef0
            var_ms = np.diag(cov)[c + 1 :]
            st.update(
                s_hm=s[:c],
                mean_hm=s[:c] / n,
                mean_pl=s[c] / n,
                cov_hm=cov_hm,
                cov_hm_ms=cov_hm_ms,
                coef0=coef0,
                cc=(cov_hm @ coef0) / np.sqrt(var_il * np.diag(cov_hm)),
                corr_il_ms=(coef0 @ cov_hm_ms) / np.sqrt(var_il * var_ms),
                var_ms=var_ms,
            )
            return st
        s_ihl, x = _np(sums["s"]), _np(sums["x"])
        cov_hm_ihl = _cov(n, st["s_hm"], s_ihl, x)
        coef1 = _solve(st["cov_hm"], cov_hm_ihl)  # (C, C): column k fits band k
        var_ilp = np.einsum("jk,jl,lk->k", coef1, st["cov_hm"], coef1)
        cov_ilp_ms = np.einsum("jk,jk->k", coef1, st["cov_hm_ms"])
        std_ms = st["std_ms"]
        mean_ihl = s_ihl / n
        mean_ih = st["cc"] * st["mean_p"] + (1.0 - st["cc"]) * st["mean_hm"]
        return {
            "mean_ms": st["mean_ms"],
            "mean_p": st["mean_p"],
            "hm_scale": st["hm_scale"],
            "mean_hm": st["mean_hm"],
            "mean_pl": st["mean_pl"],
            "coef0": st["coef0"],
            "coef1": coef1,
            "cc": st["cc"],
            "corr_il_ms": st["corr_il_ms"],
            "mean_ihl": mean_ihl,
            "mean_shift": mean_ih - mean_ihl,
            "w": _PRACS_BETA * cov_ilp_ms / np.sqrt(var_ilp * st["var_ms"]) * std_ms / std_ms.mean(),
        }

    def apply(lms, pan, lrms, st, origin, scene):  # noqa: ANN001, ANN202
        hm = matched(lms, st)
        hm_c = hm - st["mean_hm"]
        i_l = st["mean_pl"] + hm_c @ st["coef0"]
        i_h = st["cc"] * pan + (1.0 - st["cc"]) * hm
        i_l_prime = st["mean_ihl"] + hm_c @ st["coef1"]
        delta = i_h - i_l_prime - st["mean_shift"]
        l_i = 1.0 - jnp.abs(1.0 - st["corr_il_ms"] * lms / i_l_prime)
        return lms + st["w"] * l_i * delta

    margin = _lms_margin(ratio) + _bicubic_downup_reach(ratio) + ratio
    return _Impl(3, margin, gather, finish, apply)


def _impl_bdsd(sensor: Sensor, ratio: int) -> _Impl:
    o = _pan_phase(ratio)

    def gather(k, lms, pan, lrms, mask, stats, origin, scene):  # noqa: ANN001, ANN202
        c = lms.shape[-1]
        pan_lp_d = wald.mtf_filter_pan(pan, sensor, ratio)[o::ratio, o::ratio, :]
        ms_orig = imresize_bicubic(lms, 1.0 / ratio)
        ms_lp_d = wald.mtf_filter(ms_orig, sensor.gains(c), ratio)
        hd = jnp.concatenate([ms_lp_d, pan_lp_d], axis=-1)
        m_lr = mask[::ratio, ::ratio]
        return {"n": jnp.sum(m_lr), "hh": _wcross(hd, hd, m_lr), "ht": _wcross(hd, ms_orig - ms_lp_d, m_lr)}

    def finish(k, sums, stats):  # noqa: ANN001, ANN202
        hh, ht = _np(sums["hh"]), _np(sums["ht"])
        if float(sums["n"]) < hh.shape[0]:
            raise InputError(
                f"bdsd: {int(float(sums['n']))} reduced-resolution pixels, "
                f"fewer than the {hh.shape[0]} coefficients per band"
            )
        return {"gamma": _solve(hh, ht)}

    def apply(lms, pan, lrms, st, origin, scene):  # noqa: ANN001, ANN202
        return lms + jnp.concatenate([lms, pan], axis=-1) @ st["gamma"]

    down, _ = _bicubic_reaches(ratio)
    margin = max(_lms_margin(ratio) + down + _mtf_reach(ratio) * ratio + ratio, _mtf_reach(ratio) + ratio)
    return _Impl(1, margin, gather, finish, apply)


_BUILDERS: dict[str, Callable[[Sensor, int], _Impl]] = {
    "exp": _impl_exp,
    "bt_h": _impl_bt_h,
    "gs": _impl_gs,
    "gsa": _impl_gsa,
    "pca": _impl_pca,
    "bdsd": _impl_bdsd,
    "pracs": _impl_pracs,
    "mtf_glp": functools.partial(_impl_glp, "add"),
    "mtf_glp_hpm": functools.partial(_impl_glp, "hpm"),
    "mtf_glp_hpm_guarded": functools.partial(_impl_glp, "guard"),
    "mtf_glp_fs": _impl_glp_fs,
    "awlp": _impl_awlp,
}

#: The method keys with a streaming form (all of ``pansharp_jax.classical.METHODS``).
STREAMING_METHODS: tuple[str, ...] = tuple(_BUILDERS)


# --------------------------------------------------------------------------- public API


@dataclasses.dataclass(frozen=True)
class StreamingMethod:
    """A classical method as statistics passes over windows plus a per-window apply.

    Attributes:
      name: the method key (``pansharp_jax.classical.METHODS``).
      margin: PAN px of context a window needs on each side (a multiple of ``ratio``).
      passes: number of statistics passes over the windows (0 for EXP).
      ratio: PAN/MS ratio; sensor: the :class:`Sensor` (MTF gains).
      halo: LR px of wrapped context for the window's ``lms`` (:func:`lr_halo`).

    Window arrays (see the module docstring): ``lms`` (Hw, Ww, C) the whole-scene upsampled
    MS on the window (:func:`window_lms`, NOT ``upsample_ms`` of the LR window), ``pan``
    (Hw, Ww, 1), ``lrms`` (Hw/ratio, Ww/ratio, C), all float64 on one scale ([0, 1]);
    ``mask`` (Hw, Ww) float64 0/1; ``origin`` the window's top-left (row, col) in PAN px
    (may be traced); ``scene`` the static (H, W) of the scene in PAN px.
    """

    name: str
    margin: int
    passes: int
    ratio: int
    sensor: Sensor
    halo: int
    _impl: _Impl = dataclasses.field(repr=False, compare=False)

    def gather(
        self, k: int, lms: jax.Array, pan: jax.Array, lrms: jax.Array, mask: jax.Array, stats: PyTree,
        *, origin: Any = None, scene: tuple[int, int] | None = None,
    ) -> PyTree:
        """Pass ``k``: sums over the masked (core) pixels of one window; jittable (``k`` and
        ``scene`` static). Add the results of all windows leaf-wise and pass them to
        :meth:`finish`. ``stats`` is what ``finish(k - 1, ...)`` returned (None for k = 0).
        ``origin``/``scene`` are required when :attr:`needs_position` (the MTF-GLP family)."""
        if not 0 <= k < self.passes:
            raise InputError(f"{self.name}: pass {k} out of range (the method has {self.passes} passes)")
        return self._impl.gather(k, lms, pan, lrms, mask, stats, *self._position(origin, scene))

    @property
    def needs_position(self) -> bool:
        """Whether gather/apply need ``origin`` and ``scene`` (the low-pass wraps around the scene)."""
        return self._impl.positional

    def _position(self, origin: Any, scene: Any) -> tuple[Any, tuple[int, int] | None]:
        if not self._impl.positional:
            return origin, None
        if origin is None or scene is None:
            raise InputError(
                f"{self.name}: gather/apply need origin=(r0, c0) and scene=(H, W) (its low-pass "
                "wraps around the scene like interp23tap); pass both, scene static under jit"
            )
        try:
            return origin, (int(scene[0]), int(scene[1]))
        except (TypeError, jax.errors.ConcretizationTypeError) as err:
            raise InputError(f"{self.name}: scene must be static under jit (static_argnames='scene'): {err}") from None

    def finish(self, k: int, sums: PyTree, stats: PyTree | None) -> PyTree:
        """The summed pass-``k`` sums of all windows -> the statistics for pass ``k + 1`` or,
        after the last pass, for :meth:`apply` (small NumPy arrays; not jitted)."""
        if not 0 <= k < self.passes:
            raise InputError(f"{self.name}: pass {k} out of range (the method has {self.passes} passes)")
        return self._impl.finish(k, sums, stats)

    def apply(
        self, lms: jax.Array, pan: jax.Array, lrms: jax.Array, stats: PyTree, *, origin: Any = None,
        scene: tuple[int, int] | None = None,
    ) -> jax.Array:
        """The fused window (Hw, Ww, C), equal to the whole-scene fusion on the core (same
        scale as the inputs); jittable with ``scene`` static (see :meth:`gather`)."""
        return self._impl.apply(lms, pan, lrms, stats, *self._position(origin, scene))

    @functools.cached_property
    def _gather_jit(self) -> Callable[..., PyTree]:
        return jax.jit(self.gather, static_argnums=0, static_argnames="scene")

    @functools.cached_property
    def _apply_jit(self) -> Callable[..., jax.Array]:
        return jax.jit(self.apply, static_argnames="scene")


@functools.lru_cache(maxsize=64)
def _streaming_method(name: str, sensor: Sensor, ratio: int) -> StreamingMethod:
    impl = _BUILDERS[name](sensor, ratio)
    return StreamingMethod(name, _round_up(impl.margin, ratio), impl.passes, ratio, sensor, lr_halo(ratio), impl)


def streaming_method(name: str, *, sensor: str | Sensor | None, ratio: int) -> StreamingMethod:
    """The tiled form of the classical method ``name`` (a key of ``classical.METHODS``).

    Cached: the same arguments return the same object (and its compiled window functions).
    """
    if name not in _BUILDERS:
        raise InputError(f"no streaming form for method {name!r}; known: {', '.join(sorted(_BUILDERS))}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 1:
        raise InputError(f"{name}: ratio must be a positive integer, got {ratio!r}")
    return _streaming_method(name, get_sensor(sensor), int(ratio))


def fuse_tiled(
    name: str,
    lrms: Any,
    pan: Any,
    *,
    sensor: str | Sensor | None,
    ratio: int,
    tile: int,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The in-memory reference driver: fuse a scene window by window, equal to the whole scene.

    Args:
      name: method key (``classical.METHODS``).
      lrms: (h, w, C) low-resolution MS; pan: (H, W, 1) or (H, W), H = ratio h, W = ratio w.
        Any one scale (e.g. [0, 1]); computed in float64.
      sensor: sensor name or :class:`Sensor`; ratio: PAN/MS ratio.
      tile: core side in PAN px (rounded up to a multiple of ``ratio``).
      progress: called as ``progress(done, total)`` after each window visit (``total`` =
        windows x (passes + 1)).

    Returns:
      (H, W, C) float64: ``METHODS[name](None, lrms, pan, ...)`` (x64) to rounding.
    """
    with jax.enable_x64(True):
        m = streaming_method(name, sensor=sensor, ratio=ratio)
        lrms = np.asarray(lrms, np.float64)
        pan = np.asarray(pan, np.float64)
        if pan.ndim == 2:
            pan = pan[..., None]
        if lrms.ndim != 3 or pan.ndim != 3:
            raise InputError(
                f"{name}: fuse_tiled takes one image, lrms (h, w, C) and pan (H, W, 1); got {lrms.shape}, {pan.shape}"
            )
        check_inputs(lrms, pan, int(ratio), name)
        m.sensor.gains(lrms.shape[-1])
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
            raise InputError(f"{name}: tile must be a positive integer, got {tile!r}")
        h_pan, w_pan = pan.shape[:2]
        scene = (int(h_pan), int(w_pan))
        plan = plan_tiles(h_pan, w_pan, tile=int(tile), margin=m.margin, align=m.ratio)
        total, done = len(plan) * (m.passes + 1), 0

        def window(t):  # noqa: ANN001, ANN202
            r0, r1, c0, c1 = t.window
            rows, cols = extended_lr_index(t.window, scene, m.ratio)
            ext = jnp.asarray(lrms[np.ix_(rows, cols)])
            q = m.halo
            return (
                _window_lms_jit(ext, m.ratio),
                jnp.asarray(pan[r0:r1, c0:c1]),
                ext[q:-q, q:-q],
                jnp.asarray(core_mask(t)),
                jnp.asarray([r0, c0]),
            )

        stats: PyTree = None
        for k in range(m.passes):
            sums = None
            for t in plan:
                lms_w, pan_w, lrms_w, mask, origin = window(t)
                part = m._gather_jit(k, lms_w, pan_w, lrms_w, mask, stats, origin=origin, scene=scene)
                sums = part if sums is None else jax.tree.map(jnp.add, sums, part)
                done += 1
                if progress is not None:
                    progress(done, total)
            stats = m.finish(k, sums, stats)

        out = np.empty((h_pan, w_pan, lrms.shape[-1]), np.float64)
        for t in plan:
            lms_w, pan_w, lrms_w, _, origin = window(t)
            fused = np.asarray(m._apply_jit(lms_w, pan_w, lrms_w, stats, origin=origin, scene=scene))
            a, b, c, d = t.core
            ia, ib, ic, id_ = t.core_in_window
            out[a:b, c:d] = fused[ia:ib, ic:id_]
            done += 1
            if progress is not None:
                progress(done, total)
        return out


_window_lms_jit = jax.jit(window_lms, static_argnums=1)

"""Full-resolution indices of scenes larger than memory, computed tile by tile.

:func:`evaluate_full_tiled` returns the values of
:func:`~pansharp_jax.metrics.full.evaluate_full` (``D_lambda``, ``D_lambda_K``, ``D_S``,
``QNR``, ``HQNR``) while holding only one window of the fused image and of the PAN at a
time; the windows come from caller-supplied readers (e.g. windowed GeoTIFF reads).

Why tiling is exact. Every index is built from means over the non-overlapping
``block`` x ``block`` blocks (32 x 32) of the scene:

* ``D_lambda_K = 1 - mean_blocks Q2n(uint16(I_MS), uint16(MTF(F)))``;
* ``D_lambda = mean_pairs |mean_blocks Q(F_i, F_j) - mean_blocks Q(MS_i, MS_j)|``;
* ``D_S = mean_bands |mean_blocks Q(F_b, P) - mean_blocks Q(MS_b, P_low)|``,

so each is a fixed function of per-block sums (one Q2n sum, C x C band-pair sums for F
and for I_MS, C sums for each of the two D_S terms) divided by the block count. The
per-pixel inputs of a block are local: ``F`` and ``P`` themselves, ``MTF(F)`` (a 41 x 41
correlation, replicate padding), ``I_MS = interp23tap(lrms)`` and ``P_low =
interp23tap(imresize(P, 1/ratio))`` (bicubic with antialiasing, symmetric padding). The
scene is cut into *cores* aligned to the block grid and to the ratio (multiples of
``lcm(block, ratio)``) that partition it; each core is read with a *window* that adds
a margin on every side, all windows of one shape (shifted inward at the scene border,
so a border window holds the true border and the replicate / symmetric padding is the
one of the whole scene). Block maps are computed on the window and only the core's
blocks are summed; the sums are averaged at the end.

Margins (:func:`tile_margins`, derived from the filters, not hard-coded):

* PAN windows: ``max(mtf_size // 2, resize reach)`` PAN pixels, rounded up to
  ``lcm(block, ratio)``. ``mtf_size // 2 = 20`` is the half side of the toolbox's 41 x 41
  MTF kernel; the resize reach is read off MATLAB's bicubic weight tables for this
  scene (:func:`~pansharp_jax.data.resize.resize_weights`, ``4 * ratio`` support with
  antialiasing plus two taps): how far outside an LR pixel's ``ratio`` x ``ratio``
  footprint its PAN taps go (6 for ratio 4), so 32 for ratio 4 and 32 x 32 blocks.
* LR windows (``interp23tap`` of the in-memory LRMS and of the resized PAN): each of
  the ``log2(ratio)`` factor-2 stages is a 23-tap filter (half length 11 on its own
  grid), so a PAN pixel depends on samples within ``11 * (ratio/2 + ratio/4 + ... + 1)
  = 11 * (ratio - 1)`` PAN pixels (``len(taps) // 2`` for the windowed-sinc
  ``interp_general`` of other ratios), i.e. ``ceil(reach / ratio) + 1`` LR pixels
  (10 for ratio 4). The toolbox's interpolator is *circular*: LR windows are taken
  with wrapped indices (modulo the LR size), which reproduces the whole-image wrap at
  the scene border, and the window's own wrap only corrupts its margin.

Two passes. ``P_low`` near one border depends (through the circular interpolator) on
the resized PAN near the opposite border. The resized PAN is 1/ratio^2 of the PAN, so
pass 1 (the only one that reads the files) computes it core by core with the global
bicubic weight tables (the same weights and summation order as the whole-image
``imresize``) alongside the Q2n, band-pair and ``Q(F, P)`` sums; pass 2 works from
memory only (LRMS and resized PAN) for the ``Q(MS, P_low)`` sums.

Equality with the whole-scene values. Per pixel, every operation is the one of the
whole-scene computation in the same order, except two. (1) ``MTF(F)`` runs through FFTs
whose size is the window's, not the scene's: on the WV2 scene (1280 x 1280 x 8, tiles
of 512) window and whole-scene values differ by up to 4.4e-12 DN. Q2n casts them to
uint16, so a value within that distance of a half-integer may round the other way
(expected for about one pixel in 1e11; none in the tests); one such 1-DN flip moves
its block's Q2n by up to ~6e-6 (measured on WV2), i.e. ``D_lambda_K`` by that over the
block count. (2) The block means are summed tile by tile instead of in one reduction
(relative rounding ~1e-16). Measured differences to :func:`evaluate_full`
(``tests/test_full_tiled.py``, ``benchmarks/full_metrics_tiled.py``): <= 3e-16 absolute
on synthetic 256 x 256 scenes (tiles 64, 96, 128) and on the WV2 scene (tiles of 512).

Memory: the LRMS and the resized PAN (both 1/ratio^2 of the PAN) plus a few copies of
one window of ``(tile + 2 margin)^2 x C`` float64 values (FFT buffers included).
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

from pansharp_jax.data import wald
from pansharp_jax.data.resize import resize_weights
from pansharp_jax.data.sensors import Sensor, get_sensor
from pansharp_jax.errors import InputError
from pansharp_jax.metrics._quality import q2n_map, uiqi_blocks, uiqi_blocks_band_pairs
from pansharp_jax.metrics.full import _mtf_uint16, _uint16, _upsample

__all__ = ["TileMargins", "evaluate_full_tiled", "tile_margins"]

# The toolbox's MTF kernel side (``wald.mtf_filter``'s default, used by D_lambda_K).
MTF_SIZE = 41

Reader = Callable[[int, int, int, int], Any]


@dataclasses.dataclass(frozen=True)
class TileMargins:
    """Context needed around a core, see the module docstring.

    Attributes:
      pan: margin of the PAN / fused windows, PAN pixels (a multiple of ``align``).
      lr: margin of the LRMS / resized-PAN windows before upsampling, LR pixels.
      align: core and window starts are multiples of this (``lcm(block, ratio)``).
      mtf: half side of the MTF kernel, PAN pixels.
      resize: reach of the bicubic ``imresize(., 1/ratio)`` taps beyond an LR pixel's
        footprint, PAN pixels.
      upsample: reach of the upsampler (``interp23tap`` / ``interp_general``), PAN pixels.
    """

    pan: int
    lr: int
    align: int
    mtf: int
    resize: int
    upsample: int


def _upsample_reach(ratio: int) -> int:
    """PAN pixels on each side that one output of :func:`full.upsample` depends on."""
    if ratio & (ratio - 1) == 0:
        half = len(wald.CDF23) // 2
        # stage k (k = 0 .. log2(ratio) - 1) filters on a grid ratio / 2^(k+1) PAN px apart
        return sum(half * (ratio >> (k + 1)) for k in range(ratio.bit_length() - 1))
    return len(wald._general_taps(ratio)) // 2


def _resize_reach(n_in: int, ratio: int) -> int:
    """How far (PAN px) the bicubic taps of an LR pixel go beyond its ``ratio`` footprint."""
    _, idx = resize_weights(n_in, 1.0 / ratio)
    start = np.arange(idx.shape[0])[:, None] * ratio
    before = np.max(start - idx)
    after = np.max(idx - (start + ratio - 1))
    return int(max(before, after, 0))


def tile_margins(ratio: int, height: int, width: int, *, block: int = 32) -> TileMargins:
    """Margins that make a tiled evaluation equal to the whole-scene one.

    Args:
      ratio: PAN/MS resolution ratio (integer >= 1).
      height, width: scene size in PAN pixels (the bicubic tables depend on it).
      block: block side of the indices (32).

    Returns:
      A :class:`TileMargins` (all in pixels).
    """
    align = math.lcm(int(block), int(ratio))
    mtf = MTF_SIZE // 2
    resize = max(_resize_reach(height, ratio), _resize_reach(width, ratio))
    up = _upsample_reach(ratio)
    pan = -(-max(mtf, resize) // align) * align
    lr = -(-up // ratio) + 1
    return TileMargins(pan=pan, lr=lr, align=align, mtf=mtf, resize=resize, upsample=up)


# --------------------------------------------------------------------- block maps


@functools.partial(jax.jit, static_argnames=("block",))
def _band_pair_blocks(x: jax.Array, block: int) -> jax.Array:
    return uiqi_blocks_band_pairs(x, block)


@functools.partial(jax.jit, static_argnames=("block",))
def _uiqi_blocks(x: jax.Array, y: jax.Array, block: int) -> jax.Array:
    return uiqi_blocks(x, y, block)


@functools.partial(jax.jit, static_argnames=("block",))
def _q2n_blocks(ref_u16: jax.Array, fused_u16: jax.Array, block: int) -> jax.Array:
    return q2n_map(ref_u16, fused_u16, block, block, cast=False)


@jax.jit
def _resize_window(p: jax.Array, wr: jax.Array, ir: jax.Array, wc: jax.Array, ic: jax.Array) -> jax.Array:
    """Rows then columns (MATLAB's order for equal scales), the taps summed in order."""
    out = None
    for k in range(wr.shape[1]):
        term = wr[:, k, None, None] * jnp.take(p, ir[:, k], axis=0)
        out = term if out is None else out + term
    rows, out = out, None
    for k in range(wc.shape[1]):
        term = wc[None, :, k, None] * jnp.take(rows, ic[:, k], axis=1)
        out = term if out is None else out + term
    return out


@dataclasses.dataclass(frozen=True)
class _Tile:
    core: tuple[int, int, int, int]  # r0, r1, c0, c1 (PAN px)
    window: tuple[int, int, int, int]


def _starts(n: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Per axis: (core start, core end, window start, window end); windows of one length."""
    size = min(tile + 2 * margin, n)
    out = []
    for a in range(0, n, tile):
        b = min(a + tile, n)
        w0 = min(max(a - margin, 0), n - size)
        out.append((a, b, w0, w0 + size))
    return out


def _plan(height: int, width: int, tile: int, margin: int) -> list[_Tile]:
    rows, cols = _starts(height, tile, margin), _starts(width, tile, margin)
    return [_Tile((r[0], r[1], c[0], c[1]), (r[2], r[3], c[2], c[3])) for r in rows for c in cols]


def _read(reader: Reader, win: tuple[int, int, int, int], channels: int | None, what: str) -> np.ndarray:
    r0, r1, c0, c1 = win
    a = np.asarray(reader(r0, r1, c0, c1), dtype=np.float64)
    if a.ndim != 3 or a.shape[:2] != (r1 - r0, c1 - c0) or (channels is not None and a.shape[2] != channels):
        want = f"({r1 - r0}, {c1 - c0}, {channels if channels is not None else 'C'})"
        raise InputError(f"{what}({r0}, {r1}, {c0}, {c1}) returned shape {a.shape}, expected {want}")
    return a


def _wrapped_window(x: np.ndarray, win: tuple[int, int, int, int], ratio: int, lr_margin: int) -> np.ndarray:
    """LR pixels under a PAN window plus ``lr_margin`` on each side, indices wrapped."""
    r0, r1, c0, c1 = win
    rows = np.arange(r0 // ratio - lr_margin, r1 // ratio + lr_margin) % x.shape[0]
    cols = np.arange(c0 // ratio - lr_margin, c1 // ratio + lr_margin) % x.shape[1]
    return x[np.ix_(rows, cols)]


def _upsampled_window(x_dn: np.ndarray, win: tuple[int, int, int, int], ratio: int, lr_margin: int) -> jax.Array:
    """``full.upsample(x_dn)`` on the PAN window ``win``, from an LR window with margin."""
    r0, r1, c0, c1 = win
    up = _upsample(jnp.asarray(_wrapped_window(x_dn, win, ratio, lr_margin)), ratio)
    m = lr_margin * ratio
    return up[m : m + r1 - r0, m : m + c1 - c0, :]


def _check(lrms: np.ndarray, height: int, width: int, ratio: int, block: int, tile: int, max_dn: float) -> None:
    if ratio < 1:
        raise InputError(f"ratio must be a positive integer, got {ratio}")
    if lrms.ndim != 3:
        raise InputError(f"lrms must be (h, w, C), got shape {lrms.shape}")
    if lrms.shape[2] < 2:
        raise InputError("D_lambda needs at least two bands")
    if height % block or width % block:
        raise InputError(
            f"full-resolution indices need sides that are multiples of {block}, got {height}x{width} (crop it)"
        )
    if height % ratio or width % ratio or lrms.shape[:2] != (height // ratio, width // ratio):
        raise InputError(f"lrms {lrms.shape} does not match a {height}x{width} scene at ratio {ratio}")
    if tile < 1:
        raise InputError(f"tile must be a positive number of pixels, got {tile}")
    if not max_dn > 0:
        raise InputError(f"max_dn must be positive, got {max_dn}")


def evaluate_full_tiled(
    read_fused: Reader,
    read_pan: Reader,
    lrms: Any,
    *,
    height: int,
    width: int,
    ratio: int,
    sensor: str | Sensor | None,
    max_dn: float,
    tile: int = 1024,
    block: int = 32,
    flag_qnr: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Full-resolution indices of a scene read window by window (== :func:`evaluate_full`).

    Args:
      read_fused: ``read_fused(r0, r1, c0, c1)`` -> (r1-r0, c1-c0, C) fused window on the
        [0, 1] scale (float, not clipped), rows ``[r0, r1)`` and columns ``[c0, c1)`` in
        PAN pixels. Called once per tile.
      read_pan: the same for the PAN, -> (r1-r0, c1-c0, 1) on [0, 1].
      lrms: (height/ratio, width/ratio, C) low-resolution MS on [0, 1], whole (it is
        never upsampled whole: windows are).
      height, width: scene size in PAN pixels, multiples of ``block`` and ``ratio``.
      ratio: PAN/MS ratio. sensor: sensor name or ``Sensor`` (MTF gains); None = generic.
      max_dn: DN of the value 1.0 (2047 for 11 bits), as in :func:`evaluate_full`.
      tile: core side in PAN pixels, rounded up to a multiple of ``lcm(block, ratio)``;
        each read is at most ``tile + 2 * margin`` pixels a side (margin 32 for
        ratio 4, see :func:`tile_margins`).
      block: block side (32). flag_qnr: key order, as in :func:`evaluate_full`.
      progress: optional ``progress(done, total)`` called after each tile of each pass;
        ``total`` is twice the tile count (pass 1 reads the files, pass 2 works in memory).

    Returns:
      ``{"D_lambda", "D_lambda_K", "D_S", "QNR", "HQNR"}`` as Python floats, equal to
      :func:`evaluate_full` on the whole arrays up to float rounding (module docstring).
    """
    ratio, block, tile, height, width = int(ratio), int(block), int(tile), int(height), int(width)
    lrms = np.asarray(lrms, dtype=np.float64)
    _check(lrms, height, width, ratio, block, tile, max_dn)
    nb = lrms.shape[2]
    gains = tuple(get_sensor(sensor).gains(nb))
    m = tile_margins(ratio, height, width, block=block)
    tile = -(-tile // m.align) * m.align
    plan = _plan(height, width, tile, m.pan)
    total = 2 * len(plan)
    wr_all, ir_all = resize_weights(height, 1.0 / ratio)
    wc_all, ic_all = resize_weights(width, 1.0 / ratio)
    pairs = np.triu_indices(nb, k=1)

    sums: dict[str, list[np.ndarray]] = {"q2n": [], "pairs_f": [], "pairs_ms": [], "q_high": [], "q_low": []}
    n_blocks = 0
    with jax.enable_x64(True):
        lrms_dn = np.asarray(jnp.asarray(lrms) * float(max_dn))
        pan_lr_dn = np.empty((height // ratio, width // ratio, 1))

        def core_sum(block_map: jax.Array, t: _Tile) -> np.ndarray:
            r0, r1, c0, c1 = t.core
            wr0, _, wc0, _ = t.window
            a = np.asarray(block_map)
            a = a[(r0 - wr0) // block : (r1 - wr0) // block, (c0 - wc0) // block : (c1 - wc0) // block]
            return a.sum(axis=(0, 1))

        # Pass 1: everything that needs the fused image or the PAN at full resolution.
        for k, t in enumerate(plan):
            wr0, wr1, wc0, wc1 = t.window
            f = jnp.asarray(_read(read_fused, t.window, nb, "read_fused")) * float(max_dn)
            p = jnp.asarray(_read(read_pan, t.window, 1, "read_pan")) * float(max_dn)
            ms_up = _upsampled_window(lrms_dn, t.window, ratio, m.lr)
            sums["q2n"].append(core_sum(_q2n_blocks(_uint16(ms_up), _mtf_uint16(f, gains, ratio), block), t))
            sums["pairs_f"].append(core_sum(_band_pair_blocks(f, block), t))
            sums["pairs_ms"].append(core_sum(_band_pair_blocks(ms_up, block), t))
            sums["q_high"].append(core_sum(_uiqi_blocks(f, p, block), t))
            r0, r1, c0, c1 = t.core
            lr_rows = slice(r0 // ratio, r1 // ratio)
            lr_cols = slice(c0 // ratio, c1 // ratio)
            ir, ic = ir_all[lr_rows] - wr0, ic_all[lr_cols] - wc0
            if ir.min() < 0 or ir.max() >= wr1 - wr0 or ic.min() < 0 or ic.max() >= wc1 - wc0:
                raise RuntimeError("bicubic taps outside the window: tile_margins is too small")
            wr, wc = jnp.asarray(wr_all[lr_rows]), jnp.asarray(wc_all[lr_cols])
            pan_lr_dn[lr_rows, lr_cols] = np.asarray(_resize_window(p, wr, jnp.asarray(ir), wc, jnp.asarray(ic)))
            n_blocks += ((r1 - r0) // block) * ((c1 - c0) // block)
            if progress is not None:
                progress(k + 1, total)

        # Pass 2, from memory: Q(I_MS, P_low), P_low = interp23tap(imresize(P, 1/ratio)).
        for k, t in enumerate(plan):
            ms_up = _upsampled_window(lrms_dn, t.window, ratio, m.lr)
            pan_low = _upsampled_window(pan_lr_dn, t.window, ratio, m.lr)
            sums["q_low"].append(core_sum(_uiqi_blocks(ms_up, pan_low, block), t))
            if progress is not None:
                progress(len(plan) + k + 1, total)

    if n_blocks != (height // block) * (width // block):
        raise RuntimeError("the tile cores do not partition the scene")
    mean = {key: np.sum(np.stack(v), axis=0) / n_blocks for key, v in sums.items()}
    dlk = 1.0 - float(mean["q2n"])
    dl = float(np.mean(np.abs(mean["pairs_f"][pairs] - mean["pairs_ms"][pairs])))
    ds = float(np.mean(np.abs(mean["q_high"] - mean["q_low"])))
    values = {
        "D_lambda": dl,
        "D_lambda_K": dlk,
        "D_S": ds,
        "QNR": (1.0 - dl) * (1.0 - ds),
        "HQNR": (1.0 - dlk) * (1.0 - ds),
    }
    hqnr_keys, qnr_keys = ("D_lambda_K", "D_S", "HQNR"), ("D_lambda", "QNR")
    order = qnr_keys + hqnr_keys if flag_qnr else hqnr_keys + qnr_keys
    return {key: values[key] for key in order}

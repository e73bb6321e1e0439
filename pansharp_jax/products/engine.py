"""Fusing scenes of any size window by window: the product engine.

A *source* gives windows of a scene (an in-memory :class:`SceneSource`, or a GeoTIFF
pair read window by window, :class:`pansharp_jax.products.geotiff.GeoTiffPair`); a
*sink* takes fused windows (:class:`ArraySink` in memory, :class:`CogSink` into a
Cloud-Optimized GeoTIFF). :func:`fuse_tiled`:

1. plans equal-shaped windows with the method's margin (:mod:`pansharp_jax.data.tiling`;
   the margin is the method's receptive-field radius, measured on the network for CNNs,
   the filter supports for classical methods, a documented margin for global methods);
2. for methods with whole-image statistics (classical), gathers them in streaming passes
   over the windows first (nodata pixels excluded), so that every window is fused with
   the statistics of the whole scene;
3. fuses the windows in batches of one static shape (one compile), clips them to [0, 1]
   (unless ``clip=False``), zeroes nodata pixels, and blends them: plain cropping for
   local methods (exact), a feathered ramp across the core edges for global ones;
4. writes rows to the sink as soon as no later window touches them, so memory holds one
   band of window rows, never the scene.

Everything is on the [0, 1] scale; DN appear only in the sink that writes a file.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from pansharp_jax.data.tiling import TilePlan, blend_weights, core_mask, plan_tiles
from pansharp_jax.errors import InputError
from pansharp_jax.methods.base import GLOBAL, Method, finish_product

__all__ = [
    "WindowSource",
    "SceneSource",
    "ArraySink",
    "CogSink",
    "TiledReport",
    "fuse_tiled",
    "fuse_source",
    "choose_tile",
    "planned_bytes",
]


class WindowSource(Protocol):
    """A scene read window by window (PAN pixels; LRMS windows in MS pixels)."""

    height: int
    width: int
    ratio: int
    nbands: int
    sensor: Any
    bits: int
    name: str

    def read_pan(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray: ...  # (h, w, 1) [0, 1]

    def read_lrms(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray: ...  # MS px, (h, w, C) [0, 1]

    def nodata_mask(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray: ...  # (h, w) bool, True = nodata


def zero_frame_mask(pan: np.ndarray, lrms_up: np.ndarray) -> np.ndarray:
    """Nodata where the PAN and every MS band are exactly 0: (H, W, 1), (H, W, C) -> (H, W) bool."""
    return (pan[..., 0] == 0) & np.all(lrms_up == 0, axis=-1)


@dataclasses.dataclass
class SceneSource:
    """An in-memory :class:`~pansharp_jax.data.scene.Scene` as a :class:`WindowSource`.

    Nodata: pixels where the PAN and all MS bands are exactly 0 (a zero frame), when
    ``zero_is_nodata`` (the default).
    """

    scene: Any
    zero_is_nodata: bool = True

    def __post_init__(self) -> None:
        s = self.scene
        self.height, self.width = (int(v) for v in s.pan.shape[:2])
        self.ratio, self.nbands, self.sensor, self.bits, self.name = int(s.ratio), s.nbands, s.sensor, s.bits, s.name
        self.georef = s.georef

    def read_pan(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.scene.pan[r0:r1, c0:c1]

    def read_lrms(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.scene.lrms[r0:r1, c0:c1]

    def nodata_mask(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        if not self.zero_is_nodata:
            return np.zeros((r1 - r0, c1 - c0), bool)
        r = self.ratio
        lr = self.scene.lrms[r0 // r : -(-r1 // r), c0 // r : -(-c1 // r)]
        up = np.repeat(np.repeat(lr, r, 0), r, 1)[r0 % r : r0 % r + r1 - r0, c0 % r : c0 % r + c1 - c0]
        return zero_frame_mask(self.read_pan(r0, r1, c0, c1), up)


class ArraySink:
    """Collects fused windows into one (H, W, C) float64 array (``.array``)."""

    def __init__(self, height: int, width: int, bands: int) -> None:
        self.array = np.zeros((height, width, bands), np.float64)

    def write(self, r0: int, c0: int, block: np.ndarray) -> None:
        self.array[r0 : r0 + block.shape[0], c0 : c0 + block.shape[1]] = block


class CogSink:
    """Writes [0, 1] windows as DN into a :class:`pansharp_jax.products.geotiff.CogWriter`
    (DN = clip(rint(x * max_dn), 0, max_dn), uint16 for bits <= 16), in strips of
    :data:`STRIP_ROWS` rows so that the DN conversion never copies a whole band of rows."""

    def __init__(self, writer: Any, max_dn: float, dtype: Any) -> None:
        self.writer, self.max_dn, self.dtype = writer, float(max_dn), np.dtype(dtype)

    def write(self, r0: int, c0: int, block: np.ndarray) -> None:
        for s in range(0, block.shape[0], STRIP_ROWS):
            strip = np.asarray(block[s : s + STRIP_ROWS], np.float64)
            dn = np.clip(np.rint(strip * self.max_dn), 0, self.max_dn).astype(self.dtype)
            self.writer.write(r0 + s, c0, dn)


# Rows per strip when finished rows are normalised and converted (bounds the temporaries).
STRIP_ROWS = 256


class _RowBlender:
    """Weighted accumulation of windows over a band of rows; finished rows go to the sink.

    The buffer holds one window's height of rows (plus what the feather ramps reach past a
    core); after a flush the few rows still pending are moved to its top, so memory stays
    ``rows x width x bands`` float64 whatever the scene's height.
    """

    def __init__(self, sink: Any, width: int, bands: int, rows: int) -> None:
        self.sink, self.width, self.bands = sink, width, bands
        self.start = 0  # first row not yet written
        self.filled = 0  # rows of the buffer that hold contributions
        self.acc = np.zeros((rows, width, bands), np.float64)
        self.wsum = np.zeros((rows, width), np.float64)

    def add(self, r0: int, c0: int, block: np.ndarray, weights: np.ndarray) -> None:
        a = r0 - self.start
        if a < 0:
            raise RuntimeError("a window reaches rows that were already written")
        h, w = weights.shape
        if a + h > self.acc.shape[0]:  # grow (only if windows are taller than planned)
            extra = a + h - self.acc.shape[0]
            self.acc = np.concatenate([self.acc, np.zeros((extra, self.width, self.bands))])
            self.wsum = np.concatenate([self.wsum, np.zeros((extra, self.width))])
        self.acc[a : a + h, c0 : c0 + w] += block * weights[..., None]
        self.wsum[a : a + h, c0 : c0 + w] += weights
        self.filled = max(self.filled, a + h)

    def flush(self, until: int) -> None:
        n = until - self.start
        if n <= 0:
            return
        if np.any(self.wsum[:n] <= 0):
            raise RuntimeError(f"rows {self.start}..{until} have pixels no window covered")
        for s in range(0, n, STRIP_ROWS):
            e = min(n, s + STRIP_ROWS)
            self.sink.write(self.start + s, 0, self.acc[s:e] / self.wsum[s:e, :, None])
        pending = max(0, self.filled - n)
        if pending:
            self.acc[:pending] = self.acc[n : n + pending].copy()
            self.wsum[:pending] = self.wsum[n : n + pending].copy()
        self.acc[pending : max(self.filled, pending)] = 0.0
        self.wsum[pending : max(self.filled, pending)] = 0.0
        self.filled = pending
        self.start = until


@dataclasses.dataclass
class TiledReport:
    """What :func:`fuse_tiled` did: tiles, their shape, margin, passes and seconds."""

    tiles: int
    window: tuple[int, int]
    tile: int
    margin: int
    feather: int
    stat_passes: int
    seconds: float
    nodata_pixels: int


@functools.lru_cache(maxsize=4)
def _upsampler(ratio: int, dtype: str) -> Any:
    import jax

    from pansharp_jax.classical import streaming

    return jax.jit(lambda x: streaming.window_lms(x.astype(dtype), ratio))


def window_lms(source: Any, window: tuple[int, int, int, int], dtype: str = "float64") -> np.ndarray:
    """The scene's upsampled MS (``interp23tap``, circular boundary) on a PAN window.

    The toolbox's upsampling wraps around the scene, so a window at the top edge needs
    the scene's bottom rows: the LR window is extended with wrapped indices by the
    upsampler's reach (:func:`pansharp_jax.classical.streaming.extended_lr_index`), read
    as few windows of the source, upsampled in ``dtype`` (the method's precision, as its
    whole-scene path) and cropped. (H, W, C) on [0, 1].
    """
    import jax

    from pansharp_jax.classical import streaming

    r = int(source.ratio)
    rows, cols = streaming.extended_lr_index(window, (source.height, source.width), r)
    ext = _read_lr_indices(source, rows, cols)
    with jax.enable_x64(dtype == "float64"):
        return np.asarray(_upsampler(r, dtype)(ext))


def _runs(idx: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs of an index array: (position in idx, start, stop)."""
    out, start = [], 0
    for k in range(1, len(idx) + 1):
        if k == len(idx) or idx[k] != idx[k - 1] + 1:
            out.append((start, int(idx[start]), int(idx[k - 1]) + 1))
            start = k
    return out


def _read_lr_indices(source: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """LRMS pixels at the given (wrapped) row and column indices, read as few windows."""
    out = np.zeros((len(rows), len(cols), source.nbands), np.float64)
    for pr, ra, rb in _runs(rows):
        for pc, ca, cb in _runs(cols):
            out[pr : pr + rb - ra, pc : pc + cb - ca] = source.read_lrms(ra, rb, ca, cb)
    return out


def _read(source: Any, window: tuple[int, int, int, int], *, with_lms: bool = True, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """(lrms, pan, nodata, lms or None) of a PAN window."""
    r0, r1, c0, c1 = window
    r = source.ratio
    pan = np.asarray(source.read_pan(r0, r1, c0, c1), np.float64)
    lrms = np.asarray(source.read_lrms(r0 // r, r1 // r, c0 // r, c1 // r), np.float64)
    nodata = np.asarray(source.nodata_mask(r0, r1, c0, c1), bool)
    return lrms, pan, nodata, window_lms(source, window, dtype) if with_lms else None


def _progress(enabled: bool, what: str, total: int) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    class _Rate(TextColumn):
        def render(self, task: Any) -> Any:  # tiles per second
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} tiles/s" if speed else "")

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(""), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    bar = Progress(*cols, console=Console(stderr=True), transient=True, disable=not enabled)
    return bar


def _tree_add(a: Any, b: Any) -> Any:
    import jax

    return b if a is None else jax.tree.map(lambda x, y: x + y, a, b)


def fuse_tiled(
    method: Method,
    source: Any,
    sink: Any,
    *,
    tile: int = 512,
    batch: int = 1,
    margin: int | None = None,
    feather: int | None = None,
    clip: bool = True,
    mask_nodata: bool = True,
    progress: bool = True,
    on_tile: Callable[[int, int], None] | None = None,
) -> TiledReport:
    """Fuse ``source`` window by window into ``sink`` (see module docstring).

    Args:
      method: from :func:`pansharp_jax.methods.resolve`.
      source: a :class:`WindowSource`; sink: an object with ``write(r0, c0, block)``.
      tile: core side in PAN pixels (a multiple of the ratio; rounded up).
      batch: windows per call of the method (one compiled shape; the last batch is
        padded by repeating its last window).
      margin: context each side, PAN pixels (default: ``method.margin(ratio)``).
      feather: blending ramp width (default: 0 for local methods, the margin for global).
      clip: clip products to [0, 1] (NaN/Inf -> 0); False keeps raw values.
      mask_nodata: set nodata pixels (the source's mask) to 0 and keep them out of the
        whole-image statistics.
      on_tile: ``(done, total)`` callback after each fused window.

    Returns a :class:`TiledReport`.
    """
    method.check(source.nbands, source.ratio, source.name)
    t0 = time.perf_counter()
    r = int(source.ratio)
    m = int(margin) if margin is not None else method.margin(r)
    plan = plan_tiles(source.height, source.width, tile=tile, margin=m, align=r)
    f = int(feather) if feather is not None else (plan.margin if method.receptive == GLOBAL else 0)
    f = min(f, 2 * plan.margin)
    streaming = method.streaming(source.sensor, r) if method.streaming is not None else None
    if streaming is not None and streaming.margin > plan.margin:
        raise InputError(f"{method.label} needs a margin of at least {streaming.margin} px for exact tiles, got {plan.margin}")
    blender = _RowBlender(sink, source.width, source.nbands, plan.window_shape[0] + 2 * plan.margin)
    rows = plan.rows()
    nodata_total = 0
    stats = None
    passes = int(streaming.passes) if streaming is not None else 0
    with _progress(progress, method.label, len(plan)) as bar:
        apply = None
        if streaming is not None:
            import jax

            stats = _gather_stats(streaming, source, plan, mask_nodata, bar, method.label)
            apply = jax.jit(streaming.apply, static_argnames=("scene",))
        task = bar.add_task(f"{method.label}: {source.name}", total=len(plan))
        done = 0
        for i, row in enumerate(rows):
            for start in range(0, len(row), max(1, batch)):
                group = row[start : start + max(1, batch)]
                reads = [_read(source, t.window, dtype=method.dtype) for t in group]
                fused = _fuse_group(method, apply, stats, reads, [t.window for t in group], source, batch)
                for t, (_, _, nodata, _), out in zip(group, reads, fused, strict=True):
                    if clip:
                        out = finish_product(out)
                    if mask_nodata and nodata.any():
                        out = np.where(nodata[..., None], 0.0, out)
                        nodata_total += int((nodata * core_mask(t)).sum())
                    blender.add(t.window[0], t.window[2], out, blend_weights(plan, t, f))
                    done += 1
                    bar.advance(task)
                    if on_tile is not None:
                        on_tile(done, len(plan))
            # rows above the next tile row's first window start are final
            nxt = rows[i + 1][0].window[0] if i + 1 < len(rows) else source.height
            blender.flush(nxt)
    return TiledReport(len(plan), plan.window_shape, plan.tile, plan.margin, f, passes, time.perf_counter() - t0, nodata_total)


def _gather_stats(streaming: Any, source: Any, plan: TilePlan, mask_nodata: bool, bar: Any, label: str) -> Any:
    """Whole-scene statistics of a classical method, streamed over the windows' cores."""
    import jax

    stats = None
    with jax.enable_x64(True):
        gather = jax.jit(streaming.gather, static_argnums=0, static_argnames=("scene",))
        scene = (int(source.height), int(source.width))
        for k in range(int(streaming.passes)):
            task = bar.add_task(f"{label}: statistics, pass {k + 1}/{streaming.passes}", total=len(plan))
            sums = None
            for t in plan:
                lrms, pan, nodata, lms = _read(source, t.window)
                mask = core_mask(t)
                if mask_nodata:
                    mask = mask * ~nodata
                origin = np.array([t.window[0], t.window[2]])
                part = gather(k, lms, pan, lrms, mask, stats, origin=origin, scene=scene)
                sums = _tree_add(sums, part)
                bar.advance(task)
            stats = streaming.finish(k, sums, stats)
            bar.remove_task(task)
    return stats


def _fuse_group(
    method: Method, apply: Any, stats: Any, reads: list[Any], windows: list[tuple[int, int, int, int]], source: Any, batch: int
) -> list[np.ndarray]:
    """Fused windows: the streaming form's jitted ``apply`` with the whole-scene statistics
    (classical methods), else one batched call of the method padded to ``batch``."""
    r = int(source.ratio)
    if apply is not None:
        import jax

        with jax.enable_x64(True):
            scene = (int(source.height), int(source.width))
            return [
                np.asarray(apply(lms, p, lr, stats, origin=np.array([w[0], w[2]]), scene=scene))
                for (lr, p, _, lms), w in zip(reads, windows, strict=True)
            ]
    n = len(reads)
    pad = max(1, batch) - n
    lrms = np.stack([x[0] for x in reads] + [reads[-1][0]] * pad)
    pan = np.stack([x[1] for x in reads] + [reads[-1][1]] * pad)
    lms = np.stack([x[3] for x in reads] + [reads[-1][3]] * pad)
    out = np.asarray(method.fuse_batch(lrms, pan, source.sensor, r, lms=lms), np.float64)
    return [out[i] for i in range(n)]


# --------------------------------------------------------------------------- planning
def planned_bytes(method: Method, source: Any, window: tuple[int, int], batch: int = 1) -> int | None:
    """XLA's planned bytes (arguments + outputs + temporaries) of one call of the method on
    ``batch`` windows of ``window`` PAN pixels, or None when the method has no ``jax_fn``."""
    if method.jax_fn is None:
        return None
    import jax
    import jax.numpy as jnp

    r = int(source.ratio)
    dtype = jnp.float64 if method.source == "classical" else jnp.float32
    with jax.enable_x64(method.source == "classical"):
        fn = method.jax_fn(source.sensor, r)
        lr = jax.ShapeDtypeStruct((batch, window[0] // r, window[1] // r, source.nbands), dtype)
        p = jax.ShapeDtypeStruct((batch, window[0], window[1], 1), dtype)
        mem = jax.jit(fn).lower(lr, p).compile().memory_analysis()
    if mem is None:
        return None
    return int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes)


TILE_CANDIDATES = (4096, 2048, 1024, 512, 256, 128)


def choose_tile(method: Method, source: Any, max_bytes: float, *, margin: int | None = None) -> tuple[int | None, int | None]:
    """The largest tile of :data:`TILE_CANDIDATES` whose planned memory fits ``max_bytes``.

    Returns ``(tile, bytes)``; ``tile`` is None when the whole scene fits (whole-scene
    mode), and the smallest candidate when nothing fits. The blending buffer (three
    window rows x scene width x bands in float64) is counted too. Without a ``jax_fn``
    the estimate is 64 bytes per PAN pixel per band.
    """
    r = int(source.ratio)
    m = int(margin) if margin is not None else method.margin(r)

    def cost(h: int, w: int, whole: bool) -> int:
        est = planned_bytes(method, source, (h, w))
        if est is None:
            est = 64 * h * w * source.nbands
        buf = 0 if whole else 3 * h * source.width * source.nbands * 8
        return est + buf

    whole = cost(source.height, source.width, True) if source.height * source.width <= 4096 * 4096 else None
    if whole is not None and whole <= max_bytes:
        return None, whole
    last = None
    for t in TILE_CANDIDATES:
        if t >= max(source.height, source.width):
            continue
        side = (min(t + 2 * m, source.height), min(t + 2 * m, source.width))
        last = (t, cost(*side, False))
        if last[1] <= max_bytes:
            return last
    return last if last is not None else (TILE_CANDIDATES[-1], None)


def fuse_source(method: Method, source: Any, *, clip: bool = True) -> np.ndarray:
    """Whole-scene fusion of a :class:`WindowSource` read in one piece: (H, W, C) on [0, 1]."""
    lrms, pan, nodata, _ = _read(source, (0, source.height, 0, source.width), with_lms=False)
    out = method.fuse_arrays(lrms, pan, sensor=source.sensor, ratio=source.ratio, clip=clip)
    if nodata.any():
        out = np.where(nodata[..., None], 0.0, out)
    return out

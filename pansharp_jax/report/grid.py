"""Image grids: true-colour composites of fused products, plus error maps against the GT.

Rendering rules (so that panels are comparable):
  * ONE stretch for every colour panel: per display channel (R, G, B), the low/high
    percentiles (1 / 99 by default) of a reference image, the GT when there is one, else
    the LRMS, map to black/white; the same numbers are applied to every panel, so a
    method that shifts colours or brightness shows it. The PAN panel is grey with its own
    percentile stretch (it is a different quantity).
  * Error maps (GT only): per pixel, the mean over bands of ``|fused - GT|`` in DN (value x
    ``max_dn``), one colour scale for all methods from 0 to the 99th percentile of all
    methods' errors pooled, with one colour bar.
  * The LRMS panel is the LRMS repeated ``ratio`` times (nearest neighbour), to show what
    the methods start from.

Layout in pixels (matplotlib Agg, 100 dpi, no ``bbox_inches='tight'``, so sizes are exact):
cells of :data:`CELL_W` x :data:`CELL_H` (a :data:`PANEL_PX`-pixel square image box under
a title line) in up to 5 columns; a :data:`HEADER_PX` title strip on top; a first row of
reference panels ([GT,] LRMS, PAN); then the fused products in rows, each row followed,
when there is a GT, by the row of their error maps (each map under its product), and a
:data:`COLORBAR_PX` colour-bar strip at the bottom. See :func:`grid_pixel_size`.

Inputs are HWC arrays on the [0, 1] scale (DN / max_dn); fused products PAN-sized.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pansharp_jax.errors import InputError

PANEL_PX = 256
MARGIN_PX = 6
TITLE_PX = 22
CELL_W = PANEL_PX + 2 * MARGIN_PX  # 268
CELL_H = PANEL_PX + TITLE_PX + 2 * MARGIN_PX  # 290
HEADER_PX = 34
COLORBAR_PX = 66
DPI = 100
MAX_COLS = 5

__all__ = ["shared_stretch", "apply_stretch", "error_map", "grid_pixel_size", "save_grid"]


def shared_stretch(reference: np.ndarray, rgb: Sequence[int], percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[np.ndarray, np.ndarray]:
    """Per display channel ``(lo, hi)`` (each shape (3,)) from the reference's percentiles.

    Args:
      reference: (H, W, C) image on [0, 1]; non-finite values are ignored.
      rgb: indices of the bands shown as red, green, blue.
    """
    ref = np.asarray(reference, np.float64)[..., list(rgb)]
    flat = ref.reshape(-1, 3)
    lo = np.array([np.nanpercentile(np.where(np.isfinite(c), c, np.nan), percentiles[0]) for c in flat.T])
    hi = np.array([np.nanpercentile(np.where(np.isfinite(c), c, np.nan), percentiles[1]) for c in flat.T])
    hi = np.where(hi > lo, hi, lo + 1e-6)
    return lo, hi


def apply_stretch(x: np.ndarray, rgb: Sequence[int], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W, 3) display image in [0, 1] with the given per-channel stretch."""
    a = np.asarray(x, np.float64)[..., list(rgb)]
    a = np.nan_to_num(a, nan=0.0, posinf=1e6, neginf=-1e6)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def error_map(fused: np.ndarray, gt: np.ndarray, max_dn: float) -> np.ndarray:
    """(H, W) mean over bands of ``|fused - gt|``, in DN."""
    d = np.abs(np.asarray(fused, np.float64) - np.asarray(gt, np.float64)).mean(axis=-1) * max_dn
    return np.nan_to_num(d, nan=np.inf)


def _layout(n_ref: int, n_methods: int, ncols: int | None) -> tuple[int, int]:
    cols = max(1, min(ncols or MAX_COLS, max(n_ref, n_methods, 1)))
    return cols, math.ceil(n_methods / cols)


def grid_pixel_size(n_ref: int, n_methods: int, with_errors: bool = False, ncols: int | None = None) -> tuple[int, int]:
    """(width, height) in pixels of a grid.

    Args:
      n_ref: reference panels on the first row ([GT,] LRMS, PAN: 3 with GT, else 2).
      n_methods: fused products; they fill rows of ``cols`` panels, each row followed by
        the row of their error maps when ``with_errors``.
      ncols: maximum columns (default :data:`MAX_COLS`); the grid has
        ``cols = min(ncols, max(n_ref, n_methods))`` columns.
    """
    cols, method_rows = _layout(n_ref, n_methods, ncols)
    rows = 1 + method_rows * (2 if with_errors else 1)
    height = HEADER_PX + rows * CELL_H + (COLORBAR_PX if with_errors else 0)
    return cols * CELL_W, height


def save_grid(
    path: str | os.PathLike[str],
    fused: Mapping[str, np.ndarray],
    *,
    lrms: np.ndarray,
    pan: np.ndarray,
    rgb: Sequence[int],
    gt: np.ndarray | None = None,
    max_dn: float = 2047.0,
    title: str = "",
    percentiles: tuple[float, float] = (1.0, 99.0),
    ncols: int | None = None,
    scores: Mapping[str, str] | None = None,
) -> Path:
    """Write a PNG grid: [GT], LRMS, PAN, then one panel per fused product; error maps if GT.

    Args:
      path: output ``.png``.
      fused: label -> (H, W, C) fused product on [0, 1] (PAN-sized), in display order.
      lrms: (h, w, C) low-resolution MS on [0, 1].
      pan: (H, W, 1) or (H, W) PAN on [0, 1].
      rgb: band indices shown as red, green, blue (``Sensor.rgb``).
      gt: optional (H, W, C) reference; adds the GT panel and the error maps.
      max_dn: DN of value 1.0 (2047 for 11 bits), for error maps in DN.
      title: text of the header strip.
      scores: label -> a short score text shown after the label in the panel title
        (e.g. ``"SAM 5.83  ERGAS 6.41"``).

    Returns the path written. Size: :func:`grid_pixel_size`.
    """
    # The Agg canvas directly (no pyplot, no global backend switch): safe in any process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    pan2 = np.asarray(pan, np.float64)
    pan2 = (pan2.mean(axis=-1) if pan2.ndim == 3 else pan2).reshape(np.shape(pan)[0], np.shape(pan)[1])  # MHIF guide: band mean
    h, w = pan2.shape
    lrms = np.asarray(lrms, np.float64)
    rgb = [int(i) for i in rgb]
    if lrms.ndim != 3 or max(rgb) >= lrms.shape[-1]:
        raise InputError(f"rgb bands {tuple(rgb)} not available in an LRMS of shape {lrms.shape}")
    for label, f in fused.items():
        if np.shape(f)[:2] != (h, w):
            raise InputError(f"fused product '{label}' has shape {np.shape(f)}, expected PAN size {(h, w)}")
    ratio = max(1, h // lrms.shape[0])
    lrms_up = np.repeat(np.repeat(lrms, ratio, axis=0), ratio, axis=1)

    lo, hi = shared_stretch(gt if gt is not None else lrms, rgb, percentiles)
    plo, phi = np.nanpercentile(pan2, percentiles)
    refs: list[tuple[str, np.ndarray, dict]] = []
    if gt is not None:
        refs.append(("GT", apply_stretch(gt, rgb, lo, hi), {}))
    refs.append((f"LRMS (x{ratio} nearest)", apply_stretch(lrms_up, rgb, lo, hi), {}))
    refs.append(("PAN", np.clip((pan2 - plo) / max(phi - plo, 1e-12), 0, 1), {"cmap": "gray", "vmin": 0, "vmax": 1}))

    errors: dict[str, np.ndarray] = {}
    vmax = 1.0
    if gt is not None:
        errors = {label: error_map(f, gt, max_dn) for label, f in fused.items()}
        pooled = np.concatenate([e[np.isfinite(e)].ravel() for e in errors.values()] or [np.zeros(1)])
        vmax = float(np.percentile(pooled, 99.0)) if pooled.size else 1.0
        vmax = vmax if vmax > 0 else 1.0

    with_errors = gt is not None and len(fused) > 0
    cols, _ = _layout(len(refs), len(fused), ncols)
    width, height = grid_pixel_size(len(refs), len(fused), with_errors, ncols)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.patch.set_facecolor("white")
    if title:
        fig.text(0.5, 1 - (HEADER_PX / 2) / height, title, ha="center", va="center", fontsize=13, weight="bold")

    def place(row: int, col: int) -> object:
        x0 = col * CELL_W + MARGIN_PX
        y_top = HEADER_PX + row * CELL_H + TITLE_PX + MARGIN_PX
        ax = fig.add_axes((x0 / width, 1 - (y_top + PANEL_PX) / height, PANEL_PX / width, PANEL_PX / height))
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    interp = "nearest" if h <= PANEL_PX else "antialiased"
    for c, (label, img, kw) in enumerate(refs):
        ax = place(0, c)
        ax.imshow(img, interpolation=interp, **kw)
        ax.set_title(label, fontsize=10, pad=3)
    cmap = "magma"
    step = 2 if with_errors else 1
    for i, (label, f) in enumerate(fused.items()):
        r, c = divmod(i, cols)
        ax = place(1 + step * r, c)
        ax.imshow(apply_stretch(f, rgb, lo, hi), interpolation=interp)
        note = (scores or {}).get(label)
        head = f"{label}: {note}" if note else label
        ax.set_title(head, fontsize=10 if len(head) <= 34 else 8, pad=3)
        if with_errors:
            ax = place(2 + step * r, c)
            ax.imshow(np.clip(errors[label], 0, vmax), cmap=cmap, vmin=0, vmax=vmax, interpolation=interp)
            ax.set_title(f"|{label} - GT|", fontsize=10, pad=3)
    if with_errors:
        y0 = height - COLORBAR_PX + 4
        cax = fig.add_axes((0.2, 1 - (y0 + 12) / height, 0.6, 12 / height))
        cb = fig.colorbar(ScalarMappable(norm=Normalize(0, vmax), cmap=cmap), cax=cax, orientation="horizontal")
        cb.set_label("mean absolute error over bands vs GT (DN); one scale for all methods", fontsize=9)
        cb.ax.tick_params(labelsize=8)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path

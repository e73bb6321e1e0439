"""Tile plans for scenes larger than memory: windows with an overlap margin, cores that
partition the scene, and feathered blending weights.

A scene of ``height`` x ``width`` PAN pixels is cut into a grid of *cores* (``tile`` x
``tile``, the last row/column smaller) that partition it exactly. Each core is read
with a *window* that adds ``margin`` pixels of context on every side, so that an
operation whose support is at most ``margin`` pixels gives, on the core, the value it
has on the whole scene. Every window has the SAME shape (static shapes under ``jit``):
windows that would cross the scene border are shifted inward instead of padded, so a
window at the border contains the true border and the method's own border handling
(symmetric or replicate padding) is the same as on the whole scene. Window starts are
multiples of ``align`` (the PAN/MS ratio, so that a PAN window maps onto whole MS
pixels and decimation keeps its phase).

Blending: :func:`blend_weights` gives each window a weight that is 1 inside its core
away from the core edges, ramps linearly across each inner core edge over ``feather``
pixels (half inside, half outside the core; weights of two neighbours sum to 1) and
is 0 elsewhere. With ``feather=0`` the weight is the core indicator (plain cropping).
For local methods every overlapping window holds the same values, so blending is exact;
for methods with a global receptive field it hides the seams.

All coordinates are PAN pixels, half-open ``[r0, r1) x [c0, c1)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from pansharp_jax.errors import InputError

__all__ = ["Tile", "TilePlan", "plan_tiles", "blend_weights", "core_mask"]


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile: the window to read and the core it is responsible for (absolute PAN px)."""

    index: tuple[int, int]
    window: tuple[int, int, int, int]  # r0, r1, c0, c1
    core: tuple[int, int, int, int]

    @property
    def core_in_window(self) -> tuple[int, int, int, int]:
        """The core relative to the window's top-left corner."""
        r0, _, c0, _ = self.window
        a, b, c, d = self.core
        return a - r0, b - r0, c - c0, d - c0


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """A grid of tiles over a ``height`` x ``width`` scene (see module docstring)."""

    height: int
    width: int
    tile: int
    margin: int
    align: int
    window_shape: tuple[int, int]
    tiles: tuple[Tile, ...]
    grid: tuple[int, int]

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):  # noqa: ANN204 - iterator of Tile
        return iter(self.tiles)

    @functools.cached_property
    def shortest_core(self) -> int:
        """The shortest core side of the plan, PAN pixels (the last row/column may be short)."""
        return min(min(t.core[1] - t.core[0], t.core[3] - t.core[2]) for t in self.tiles)

    def rows(self) -> list[list[Tile]]:
        """The tiles grouped by grid row, top to bottom."""
        out: list[list[Tile]] = [[] for _ in range(self.grid[0])]
        for t in self.tiles:
            out[t.index[0]].append(t)
        return out


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _axis(size: int, tile: int, margin: int, align: int) -> tuple[int, list[tuple[int, int, int, int]]]:
    """Window length and (w0, w1, c0, c1) per tile along one axis."""
    if tile >= size:
        return size, [(0, size, 0, size)]
    n = math.ceil(size / tile)
    length = min(size, tile + 2 * margin)
    out = []
    for i in range(n):
        c0, c1 = i * tile, min(size, (i + 1) * tile)
        w0 = min(max(c0 - margin, 0), size - length)
        w0 -= w0 % align  # aligned start; length and size are multiples of align
        out.append((w0, w0 + length, c0, c1))
    return length, out


def plan_tiles(height: int, width: int, *, tile: int, margin: int, align: int = 1) -> TilePlan:
    """Cut a ``height`` x ``width`` scene into equal-shaped overlapping windows.

    Args:
      height, width: scene size in PAN pixels (multiples of ``align``).
      tile: core side in PAN pixels (rounded up to a multiple of ``align``); a scene side
        not larger than ``tile`` is one window along that axis.
      margin: context on each side of a core, PAN pixels (rounded up to ``align``).
      align: window starts and cores are multiples of it (the ratio).

    Returns:
      A :class:`TilePlan`: every window has the shape ``window_shape`` and lies inside the
      scene; the cores partition it; each core lies in its window with at least
      ``margin`` pixels of context wherever the scene has them.
    """
    if height < 1 or width < 1:
        raise InputError(f"scene size must be positive, got {height}x{width}")
    if align < 1 or height % align or width % align:
        raise InputError(f"scene size {height}x{width} is not a multiple of the alignment {align}")
    if tile < 1:
        raise InputError(f"tile size must be positive, got {tile}")
    if margin < 0:
        raise InputError(f"margin must be >= 0, got {margin}")
    tile, margin = _round_up(tile, align), _round_up(margin, align)
    hl, rows = _axis(height, tile, margin, align)
    wl, cols = _axis(width, tile, margin, align)
    tiles = tuple(
        Tile((i, j), (r[0], r[1], c[0], c[1]), (r[2], r[3], c[2], c[3]))
        for i, r in enumerate(rows)
        for j, c in enumerate(cols)
    )
    return TilePlan(height, width, tile, margin, align, (hl, wl), tiles, (len(rows), len(cols)))


def _ramp(n0: int, length: int, c0: int, c1: int, size: int, feather: int) -> np.ndarray:
    """1-D weights of a window [n0, n0 + length) whose core is [c0, c1) on an axis of ``size``."""
    x = np.arange(n0, n0 + length, dtype=np.float64)
    inside = (x >= c0) & (x < c1)
    if feather <= 0:
        return inside.astype(np.float64)
    w = np.ones(length)
    if c0 > 0:  # an inner edge before the core: ramp across it
        w = np.minimum(w, np.clip((x - c0 + 0.5) / feather + 0.5, 0.0, 1.0))
    else:
        w = np.where(x < c0, 0.0, w)
    if c1 < size:
        w = np.minimum(w, np.clip((c1 - 0.5 - x) / feather + 0.5, 0.0, 1.0))
    else:
        w = np.where(x >= c1, 0.0, w)
    return w


def blend_weights(plan: TilePlan, tile: Tile, feather: int) -> np.ndarray:
    """(window_h, window_w) float64 blending weights of ``tile`` (see module docstring).

    ``feather`` (PAN pixels) must be at most twice the plan's margin so that the ramp
    outside a core stays inside the window; the weights of all windows sum to 1 at every
    scene pixel.
    """
    if feather > 2 * plan.margin:
        raise InputError(f"feather {feather} px needs a margin of at least {math.ceil(feather / 2)} px, plan has {plan.margin}")
    feather = min(feather, plan.shortest_core)
    r0, r1, c0, c1 = tile.window
    a, b, c, d = tile.core
    wr = _ramp(r0, r1 - r0, a, b, plan.height, feather)
    wc = _ramp(c0, c1 - c0, c, d, plan.width, feather)
    return wr[:, None] * wc[None, :]


def core_mask(tile: Tile) -> np.ndarray:
    """(window_h, window_w) float64: 1 on the tile's core, 0 elsewhere (for statistics)."""
    r0, r1, c0, c1 = tile.window
    a, b, c, d = tile.core_in_window
    m = np.zeros((r1 - r0, c1 - c0))
    m[a:b, c:d] = 1.0
    return m

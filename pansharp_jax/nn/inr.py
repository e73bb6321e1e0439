"""Implicit neural representation (INR) core: coordinate queries on a feature map, LIIF style.

A low-resolution feature map ``feat`` (N, h, w, C) is read at continuous coordinates and
decoded by a small MLP, so one set of parameters gives any output size (INFN / FeINFN).

Conventions (LIIF, Chen et al. 2021, as used by FeINFN):

* **Coordinates** are (y, x) in [-1, 1]; the centre of cell (i, j) of an h x w grid is
  ``(-1 + (2i + 1)/h, -1 + (2j + 1)/w)`` (:func:`make_coord`; ``align_corners=False``).
* **Nearest cell** of a coordinate: ``floor((y + 1) h / 2)`` clipped to [0, h-1] (ties
  cannot occur after the shift below).
* **Local ensemble**: a query ``q`` reads the 4 cells around it: ``q + (vy/h + eps,
  vx/w + eps)`` for vy, vx in {-1, +1}, each clamped to [-1 + 1e-6, 1 - 1e-6], then the
  nearest cell (:func:`local_neighbours`). Relative coordinate ``rel = (q - centre) * (h, w)``
  (one cell = 2 units).
* **Weights** over the 4 predictions: ``"area"``: each weighted by the area ``|rel_y rel_x|``
  of the diagonally opposite neighbour, normalised (:func:`area_weights`): with an identity
  decoder this is bilinear interpolation (``align_corners=False``) between the outermost
  cell centres, and returns the map itself at its own cell centres; outside the outermost
  centres it follows LIIF's clamped-shift rule (a mild extrapolation, not edge clamping).
  Computed as the product of the two 1-D normalised weights, which equals LIIF's
  normalised areas wherever those are defined; where both neighbours along an axis are the
  same cell (LIIF: all areas ~1e-9, weights then set by rounding) the split is even.
  ``"cosine"``: softmax over the 4 of ``cos(z_j, g_q) / temperature`` between each cell's
  feature and a guide feature at the query (INFN's parameter-free INR-CS; the exact
  normalisation is not public, softmax is our choice) (:func:`cosine_weights`).
  ``"logit"``: softmax of an extra logit the decoder outputs (FeINFN).
* **Scale**: an h x w map at scale s is decoded on an ``H x W`` grid with
  ``H = floor(h s + 0.5)`` (round half up, at least 1), the pixel centres of that grid
  spanning [-1, 1] (:func:`grid_query`). The cell size fed to the decoder (``cell_decode``)
  is ``2 / (h s)`` from the continuous scale, not the rounded size, so outputs vary
  continuously with s.

All functions are pure ``jnp`` (jit / vmap / grad); shapes are static.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError

EPS_SHIFT = 1e-6
_SHIFTS = ((-1, -1), (-1, 1), (1, -1), (1, 1))  # (vy, vx); index 3 - k is the opposite of k


def make_coord(h: int, w: int) -> jax.Array:
    """Cell-centre coordinates of an h x w grid: (h, w, 2) float32 (y, x) in (-1, 1)."""
    ys = -1.0 + (2.0 * np.arange(h) + 1.0) / h
    xs = -1.0 + (2.0 * np.arange(w) + 1.0) / w
    return jnp.asarray(np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1), jnp.float32)


def output_size(h: int, w: int, scale: float | tuple[float, float]) -> tuple[int, int]:
    """Output grid of an h x w map at ``scale`` (one number or (sy, sx)): ``floor(n s + 0.5)``, >= 1."""
    sy, sx = (scale, scale) if np.isscalar(scale) else scale  # type: ignore[misc]
    if not (sy > 0 and sx > 0):
        raise InputError(f"scale must be positive, got {scale!r}")
    return max(1, int(math.floor(h * sy + 0.5))), max(1, int(math.floor(w * sx + 0.5)))


def grid_query(h: int, w: int, scale: float | tuple[float, float]) -> tuple[jax.Array, jax.Array, tuple[int, int]]:
    """Queries that decode an h x w map at ``scale``.

    Returns:
      ``(coords, cell, (H, W))``: coords (H*W, 2) (y, x) cell centres of the H x W output
      grid (row-major), cell (2,) = ``(2 / (h sy), 2 / (w sx))`` (continuous in the scale).
    """
    sy, sx = (scale, scale) if np.isscalar(scale) else scale  # type: ignore[misc]
    out_h, out_w = output_size(h, w, (sy, sx))
    coords = make_coord(out_h, out_w).reshape(-1, 2)
    cell = jnp.asarray([2.0 / (h * sy), 2.0 / (w * sx)], jnp.float32)
    return coords, cell, (out_h, out_w)


def _cell_index(coords: jax.Array, h: int, w: int) -> tuple[jax.Array, jax.Array]:
    iy = jnp.clip(jnp.floor((coords[..., 0] + 1.0) * (h / 2.0)), 0, h - 1).astype(jnp.int32)
    ix = jnp.clip(jnp.floor((coords[..., 1] + 1.0) * (w / 2.0)), 0, w - 1).astype(jnp.int32)
    return iy, ix


def _gather(feat: jax.Array, iy: jax.Array, ix: jax.Array) -> jax.Array:
    n, h, w, c = feat.shape
    flat = (iy * w + ix).reshape(n, -1)
    out = jnp.take_along_axis(feat.reshape(n, h * w, c), flat[..., None], axis=1)
    return out.reshape((*iy.shape, c))


def _batch_coords(coords: jax.Array, n: int) -> jax.Array:
    coords = jnp.asarray(coords)
    if coords.ndim == 2:
        coords = jnp.broadcast_to(coords, (n, *coords.shape))
    if coords.ndim != 3 or coords.shape[0] != n or coords.shape[-1] != 2:
        raise InputError(f"coords must be (Q, 2) or (N, Q, 2) with N = {n}, got {coords.shape}")
    return coords


def sample_nearest(feat: jax.Array, coords: jax.Array) -> jax.Array:
    """The nearest cell's feature: feat (N, h, w, C), coords (Q, 2) or (N, Q, 2) -> (N, Q, C)."""
    n, h, w, _ = feat.shape
    coords = _batch_coords(coords, n)
    iy, ix = _cell_index(coords, h, w)
    return _gather(feat, iy, ix)


class Neighbours(NamedTuple):
    """The 4 cells around each query, stacked on a leading axis of 4 (order of the shifts)."""

    feats: jax.Array  # (4, N, Q, C) features of the cells
    rel: jax.Array  # (4, N, Q, 2) (q - centre) * (h, w)


def local_neighbours(feat: jax.Array, coords: jax.Array, eps: float = EPS_SHIFT) -> Neighbours:
    """LIIF's local-ensemble neighbours of each query (see the module docstring).

    Args:
      feat: (N, h, w, C) feature map. coords: (Q, 2) or (N, Q, 2) (y, x) in [-1, 1].
      eps: the shift that breaks ties towards the next cell (LIIF's 1e-6).

    Returns:
      :class:`Neighbours` with feats (4, N, Q, C) and rel (4, N, Q, 2).
    """
    n, h, w, _ = feat.shape
    coords = _batch_coords(coords, n).astype(feat.dtype)
    scale = jnp.asarray([h, w], coords.dtype)
    feats, rels = [], []
    for vy, vx in _SHIFTS:
        shift = jnp.asarray([vy / h + eps, vx / w + eps], coords.dtype)
        q = jnp.clip(coords + shift, -1.0 + 1e-6, 1.0 - 1e-6)
        iy, ix = _cell_index(q, h, w)
        centre = jnp.stack([-1.0 + (2.0 * iy + 1.0) / h, -1.0 + (2.0 * ix + 1.0) / w], axis=-1).astype(coords.dtype)
        feats.append(_gather(feat, iy, ix))
        rels.append((coords - centre) * scale)
    return Neighbours(jnp.stack(feats), jnp.stack(rels))


def _split(d_minus: jax.Array, d_plus: jax.Array) -> tuple[jax.Array, jax.Array]:
    total = d_minus + d_plus
    ok = total > 1e-12
    w_minus = jnp.where(ok, d_plus / jnp.where(ok, total, 1.0), 0.5)
    return w_minus, 1.0 - w_minus


def area_weights(rel: jax.Array) -> jax.Array:
    """Bilinear (area) weights (4, N, Q) from rel (4, N, Q, 2): neighbour k gets the normalised
    area of its opposite ``3 - k``, computed as a product of 1-D weights (module docstring)."""
    a = jnp.abs(rel)
    wy_m, wy_p = _split(a[0, ..., 0], a[2, ..., 0])  # vy = -1: neighbours 0, 1; vy = +1: 2, 3
    wx_m, wx_p = _split(a[0, ..., 1], a[1, ..., 1])  # vx = -1: neighbours 0, 2; vx = +1: 1, 3
    return jnp.stack([wy_m * wx_m, wy_m * wx_p, wy_p * wx_m, wy_p * wx_p])


def cosine_weights(cell_feats: jax.Array, guide: jax.Array, temperature: float = 1.0) -> jax.Array:
    """INR-CS weights: softmax over the 4 neighbours of ``cos(z_j, g) / temperature``.

    Args:
      cell_feats: (4, N, Q, D) neighbour features z_j. guide: (N, Q, D) guide feature g at the query.
      temperature: > 0 (a fixed constant: the weighting has no learned parameters).

    Returns:
      (4, N, Q) non-negative weights summing to 1 over the first axis.
    """
    if cell_feats.shape[-1] != guide.shape[-1]:
        raise InputError(f"cosine weights need equal feature sizes, got {cell_feats.shape[-1]} and {guide.shape[-1]}")
    num = jnp.sum(cell_feats * guide[None], axis=-1)
    den = jnp.linalg.norm(cell_feats, axis=-1) * jnp.linalg.norm(guide, axis=-1)[None]
    cos = num / jnp.maximum(den, 1e-12)
    return jax.nn.softmax(cos / temperature, axis=0)


def ensemble(preds: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted sum of the 4 predictions: preds (4, N, Q, O), weights (4, N, Q) -> (N, Q, O)."""
    return jnp.sum(preds * weights[..., None], axis=0)


class MLP(nn.Module):
    """Per-vector MLP: Dense + ReLU for each of ``hidden``, then Dense(``out_dim``); (..., D) -> (..., out_dim)."""

    hidden: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(int(width), name=f"dense_{i}")(x))
        return nn.Dense(self.out_dim, name="out")(x)


class LocalImplicitDecoder(nn.Module):
    """Decode a feature map at arbitrary coordinates with a local ensemble of MLP predictions.

    For each query and each of its 4 neighbour cells the MLP sees ``[z_j, g_q, rel_j,
    cell * (h, w)]`` (``g_q`` only when ``guide`` is given, the cell term only with
    ``cell_decode``); the 4 outputs are combined with the ``weighting`` of the module
    docstring. Parameters do not depend on the number or place of the queries, so one set
    decodes any scale. Extra per-cell inputs (e.g. FeINFN's high-pass of the LR feature)
    are passed as channels of ``feat``.

    Attributes:
      out_dim: output channels O. hidden: MLP widths (default 256, 128).
      weighting: ``"area"``, ``"cosine"`` (needs ``guide`` with C channels) or ``"logit"``.
      temperature: softmax temperature of the cosine weights.
      cell_decode: feed the query cell size (LIIF's cell decoding).
    """

    out_dim: int
    hidden: Sequence[int] = (256, 128)
    weighting: str = "area"
    temperature: float = 1.0
    cell_decode: bool = True

    @nn.compact
    def __call__(
        self, feat: jax.Array, coords: jax.Array, cell: jax.Array | None = None, guide: jax.Array | None = None
    ) -> jax.Array:
        """feat (N, h, w, C); coords (Q, 2) or (N, Q, 2); cell (2,) or (N, Q, 2); guide (N, Q, D) -> (N, Q, O)."""
        if self.weighting not in ("area", "cosine", "logit"):
            raise InputError(f"unknown weighting {self.weighting!r}: use area, cosine or logit")
        n, h, w, _ = feat.shape
        nb = local_neighbours(feat, coords)
        parts = [nb.feats]
        if guide is not None:
            parts.append(jnp.broadcast_to(guide[None], (4, *guide.shape)).astype(feat.dtype))
        parts.append(nb.rel)
        if self.cell_decode:
            if cell is None:
                raise InputError("cell_decode needs the query cell size (cell=...)")
            c = jnp.asarray(cell, feat.dtype) * jnp.asarray([h, w], feat.dtype)
            parts.append(jnp.broadcast_to(c, nb.rel.shape))
        extra = 1 if self.weighting == "logit" else 0
        preds = MLP(tuple(self.hidden), self.out_dim + extra, name="mlp")(jnp.concatenate(parts, axis=-1))
        if self.weighting == "area":
            weights = area_weights(nb.rel)
        elif self.weighting == "cosine":
            if guide is None:
                raise InputError("cosine weighting needs a guide feature at each query (guide=...)")
            weights = cosine_weights(nb.feats, guide, self.temperature)
        else:
            weights = jax.nn.softmax(preds[..., -1], axis=0)
        return ensemble(preds[..., : self.out_dim], weights)

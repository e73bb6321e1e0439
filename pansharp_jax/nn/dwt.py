"""Differentiable multi-level 2D discrete wavelet transform (DWT) on channels-last images.

Orthogonal wavelets with *periodization* boundaries: the signal is treated as periodic, so a
level maps an ``H x W`` plane to four ``H/2 x W/2`` sub-bands, the transform is orthonormal
(energy preserving) and :func:`idwt2` inverts it exactly. Conventions along one axis of
length N (even), with lowpass ``h`` and highpass ``g`` of length L:

    a[k] = sum_j h[j] * x[(2k + j) mod N],     d[k] = sum_j g[j] * x[(2k + j) mod N],
    g[j] = (-1)**j * h[L - 1 - j].

The 2D transform filters the rows (axis H) first, then the columns (axis W); sub-bands are
named by (row filter, column filter): ``LL`` (approximation), ``LH`` (lowpass over H,
highpass over W: vertical edges), ``HL``, ``HH``. An odd side is made even by repeating its
last row / column once before that level (as PyWavelets' ``periodization`` mode does), so
any size works; the inverse then returns the padded (even) size.

Filters (entered here from their closed forms, not read from a library):

* ``haar`` (= ``db1``): h = (1, 1) / sqrt(2).
* ``db2`` (= ``sym2``): h = (1 + sqrt3, 3 + sqrt3, 3 - sqrt3, 1 - sqrt3) / (4 sqrt2), the
  Daubechies scaling filter with two vanishing moments (PyWavelets' ``rec_lo`` order).

The functions work on any array ``(..., H, W, C)`` (a batch dimension is optional), take and
return float arrays of the input dtype, and are pure ``jnp`` (jit / grad / vmap friendly).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError

_S2 = math.sqrt(2.0)
_S3 = math.sqrt(3.0)

LOWPASS: dict[str, tuple[float, ...]] = {
    "haar": (1.0 / _S2, 1.0 / _S2),
    "db2": ((1 + _S3) / (4 * _S2), (3 + _S3) / (4 * _S2), (3 - _S3) / (4 * _S2), (1 - _S3) / (4 * _S2)),
}
ALIASES = {"db1": "haar", "sym2": "db2"}

Bands = tuple[jax.Array, jax.Array, jax.Array]  # (LH, HL, HH) of one level


def wavelet_filters(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(lowpass h, highpass g) of the orthogonal wavelet ``name`` as float64 vectors of length L.

    ``name``: ``haar``/``db1`` or ``db2``/``sym2`` (case-insensitive). ``g[j] = (-1)**j h[L-1-j]``.
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in LOWPASS:
        raise InputError(f"unknown wavelet {name!r}: use one of {', '.join(sorted([*LOWPASS, *ALIASES]))}")
    h = np.asarray(LOWPASS[key], np.float64)
    g = np.asarray([(-1) ** j * h[len(h) - 1 - j] for j in range(len(h))], np.float64)
    return h, g


def _make_even(x: jax.Array, axis: int) -> jax.Array:
    """Repeat the last slice along ``axis`` once when that side is odd."""
    n = x.shape[axis]
    if n % 2 == 0:
        return x
    last = jax.lax.slice_in_dim(x, n - 1, n, axis=axis)
    return jnp.concatenate([x, last], axis=axis)


def _analysis_1d(x: jax.Array, h: np.ndarray, g: np.ndarray, axis: int) -> tuple[jax.Array, jax.Array]:
    """One periodized analysis step along ``axis`` (even length N -> two halves of N/2)."""
    x = _make_even(x, axis)
    lo = jnp.zeros_like(x)
    hi = jnp.zeros_like(x)
    for j in range(len(h)):
        shifted = jnp.roll(x, -j, axis=axis)  # shifted[n] = x[(n + j) mod N]
        lo = lo + float(h[j]) * shifted
        hi = hi + float(g[j]) * shifted
    n = x.shape[axis]
    lo = jax.lax.slice_in_dim(lo, 0, n, stride=2, axis=axis)
    hi = jax.lax.slice_in_dim(hi, 0, n, stride=2, axis=axis)
    return lo, hi


def _synthesis_1d(lo: jax.Array, hi: jax.Array, h: np.ndarray, g: np.ndarray, axis: int) -> jax.Array:
    """Inverse of :func:`_analysis_1d` (two halves of M -> length 2M) along ``axis``."""
    shape = list(lo.shape)
    shape[axis] = 2 * lo.shape[axis]

    def upsample(v: jax.Array) -> jax.Array:
        z = jnp.stack([v, jnp.zeros_like(v)], axis=axis + 1 if axis >= 0 else axis)
        return z.reshape(shape)

    up_lo, up_hi = upsample(lo), upsample(hi)
    out = jnp.zeros(shape, lo.dtype)
    for j in range(len(h)):
        # x[n] = sum_k a[k] h[n - 2k] + d[k] g[n - 2k]  (indices mod N)
        out = out + float(h[j]) * jnp.roll(up_lo, j, axis=axis) + float(g[j]) * jnp.roll(up_hi, j, axis=axis)
    return out


def dwt2(x: jax.Array, wavelet: str = "haar") -> tuple[jax.Array, Bands]:
    """One level of the periodized 2D DWT of ``x`` (..., H, W, C).

    Returns ``(LL, (LH, HL, HH))``, each (..., ceil(H/2), ceil(W/2), C) in the units of ``x``
    (orthonormal: the sum of squares over the four bands equals that of the even-padded input).
    """
    if x.ndim < 3:
        raise InputError(f"dwt2 expects (..., H, W, C), got shape {x.shape}")
    h, g = wavelet_filters(wavelet)
    lo, hi = _analysis_1d(x, h, g, axis=x.ndim - 3)  # rows (H)
    ll, lh = _analysis_1d(lo, h, g, axis=x.ndim - 2)  # columns (W)
    hl, hh = _analysis_1d(hi, h, g, axis=x.ndim - 2)
    return ll, (lh, hl, hh)


def idwt2(ll: jax.Array, bands: Bands, wavelet: str = "haar") -> jax.Array:
    """Inverse of :func:`dwt2`: (..., h, w, C) sub-bands -> (..., 2h, 2w, C)."""
    h, g = wavelet_filters(wavelet)
    lh, hl, hh = bands
    ax_h, ax_w = ll.ndim - 3, ll.ndim - 2
    lo = _synthesis_1d(ll, lh, h, g, axis=ax_w)
    hi = _synthesis_1d(hl, hh, h, g, axis=ax_w)
    return _synthesis_1d(lo, hi, h, g, axis=ax_h)


def wavedec2(x: jax.Array, wavelet: str = "haar", levels: int = 1) -> tuple[jax.Array, list[Bands]]:
    """``levels``-level 2D DWT of ``x`` (..., H, W, C): the LL band is decomposed again each level.

    Returns ``(LL_J, [bands_1, ..., bands_J])`` with ``bands_j = (LH, HL, HH)`` at level j
    (finest first), level j of size about (H / 2**j, W / 2**j). ``levels`` >= 1.
    """
    if int(levels) < 1:
        raise InputError(f"levels must be >= 1, got {levels}")
    details: list[Bands] = []
    ll = x
    for _ in range(int(levels)):
        ll, bands = dwt2(ll, wavelet)
        details.append(bands)
    return ll, details


def waverec2(ll: jax.Array, details: list[Bands], wavelet: str = "haar") -> jax.Array:
    """Inverse of :func:`wavedec2` (exact for even sizes at every level)."""
    x = ll
    for bands in reversed(details):
        x = idwt2(x, bands, wavelet)
    return x

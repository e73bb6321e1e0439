"""Wald-protocol simulation: the toolbox's MTF-matched filters, decimation and interpolators.

Everything here reproduces the MATLAB pansharpening toolbox (``genMTF``, ``MTF``,
``MTF_PAN``, ``interp23tap``) to floating-point rounding, so that re-deriving the LRMS
of a reduced-resolution file from its GT gives back the file (golden test).

* ``mtf_kernels``: per band, a 41x41 Gaussian whose frequency response at the MS
  Nyquist frequency ``1/(2*ratio)`` equals the sensor's gain, turned into a FIR filter
  by the window method (``fwind1`` with a Kaiser window, beta 0.5, rotated to 2-D).
  The kernel is NOT renormalised (its DC gain is not exactly 1), as in the toolbox.
* ``mtf_filter``: per-band correlation with that kernel, replicate padding, output the
  size of the input. Large kernels are applied through the FFT (exact up to rounding).
* ``decimate``: keep rows/cols ``ratio//2, ratio//2 + ratio, ...`` (``x[2::4, 2::4]``).
* ``interp23tap``: the 23-tap polynomial (CDF) interpolator, one factor of 2 at a time,
  circular boundary, for ratios that are powers of two. The toolbox loops
  ``ratio/2`` times, which is only right for ratios 2 and 4; we loop ``log2(ratio)``
  times (identical for 2 and 4, correct for 8).
* ``interp_general``: any integer ratio, by a windowed-sinc (Kaiser) FIR interpolator
  of the same support per factor; used where the ratio is not a power of two.

Arrays are (..., H, W, C) channels-last with optional leading batch dims. Functions are
pure, jittable and dtype-preserving: run them under ``jax.enable_x64(True)`` with
float64 inputs for toolbox-exact numbers. Values are whatever scale they come in (DN
or [0, 1]): all operations here are linear.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.data.sensors import Sensor, get_sensor
from pansharp_jax.errors import InputError

Gains = Sequence[float] | Sensor | str

# Half of the symmetric 23-tap interpolator (centre tap first); odd taps beyond the
# centre are zero. Coefficients of the toolbox's CDF 23-tap filter.
_CDF23_HALF = 2.0 * np.array(
    [0.5, 0.305334091185, 0, -0.072698593239, 0, 0.021809577942, 0, -0.005192756653, 0, 0.000807762146, 0, -0.000060081482]
)
CDF23 = np.concatenate([_CDF23_HALF[:0:-1], _CDF23_HALF])  # 23 taps, symmetric


def _gaussian_matlab(n: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', n, sigma)``: normalised, tiny tails zeroed."""
    half = (n - 1) / 2
    x = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(x, x)
    h = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0.0
    return h / h.sum()


def _fwind1(hd: np.ndarray, window: np.ndarray) -> np.ndarray:
    """MATLAB ``fwind1(Hd, w)`` for a square ``Hd`` and a 1-D window (rotation method).

    The desired frequency response ``hd`` (centred, odd size) is sampled into an
    impulse response (``fsamp2``), which is multiplied by the circularly symmetric
    window obtained by rotating ``window`` (linear interpolation, zero outside radius 1).
    """
    n = window.shape[0]
    t = (np.arange(n) - (n - 1) / 2) * (2.0 / (n - 1))
    t1, t2 = np.meshgrid(t, t)
    radius = np.sqrt(t1 * t1 + t2 * t2)
    outside = (radius < t[0]) | (radius > t[-1])
    radius[outside] = 0.0
    w2d = np.interp(radius, t, window)
    w2d[outside] = 0.0
    # fsamp2: inverse-shift the centred response, inverse FFT, shift back, rotate 180.
    h = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(hd)))
    h = np.rot90(h, 2)
    return np.real(h) * w2d


@functools.lru_cache(maxsize=64)
def _mtf_kernel(gain: float, ratio: int, size: int) -> np.ndarray:
    if not 0.0 < gain < 1.0:
        raise InputError(f"MTF gain at Nyquist must be in (0, 1), got {gain}")
    fcut = 1.0 / ratio
    alpha = np.sqrt(((size - 1) * (fcut / 2)) ** 2 / (-2.0 * np.log(gain)))
    hd = _gaussian_matlab(size, alpha)
    hd = hd / hd.max()
    kernel = _fwind1(hd, np.kaiser(size, 0.5))
    kernel.setflags(write=False)
    return kernel


def _resolve_gains(gains: Gains, nbands: int) -> tuple[float, ...]:
    if isinstance(gains, (str, Sensor)):
        return get_sensor(gains).gains(nbands)
    out = tuple(float(g) for g in gains)
    if len(out) != nbands:
        raise InputError(f"wrong band count: {len(out)} MTF gains for an image with {nbands} bands")
    return out


def mtf_kernels(gains: Sequence[float], ratio: int, size: int = 41) -> np.ndarray:
    """The toolbox's MTF filter bank (``genMTF``).

    Args:
      gains: MTF gain at Nyquist per band (unitless, in (0, 1)).
      ratio: PAN/MS resolution ratio (sets the Nyquist frequency 1/(2*ratio)).
      size: kernel side (odd); the toolbox uses 41.

    Returns:
      (size, size, C) float64 kernels, not renormalised.
    """
    return np.stack([_mtf_kernel(float(g), int(ratio), int(size)) for g in gains], axis=-1)


def _small_kernel_rfft2(kern: jax.Array, hp: int, wp: int) -> jax.Array:
    """``rfft2(kern, s=(hp, wp))`` of small (C, k, k) kernels as two DFT-matrix products.

    Zero padding makes most of a full FFT wasted work: ``E_h @ K @ E_w^T`` with (hp, k) and
    (wp//2 + 1, k) DFT matrices costs a fraction of it for k << hp, wp.
    """
    k = kern.shape[-1]
    m = np.arange(k)
    e_h = np.exp(-2j * np.pi * np.outer(np.arange(hp), m) / hp)
    e_w = np.exp(-2j * np.pi * np.outer(np.arange(wp // 2 + 1), m) / wp)
    cdt = jnp.result_type(kern.dtype, jnp.complex64)
    # The barrier keeps XLA from constant-folding this (slow to compile, a huge constant).
    kc = jax.lax.optimization_barrier(kern.astype(cdt))
    return jnp.einsum("um,cmn,vn->cuv", jnp.asarray(e_h, cdt), kc, jnp.asarray(e_w, cdt))


def _correlate_same_replicate(x: jax.Array, kernels: np.ndarray) -> jax.Array:
    """Per-channel 2-D correlation with replicate padding, output the size of ``x``.

    x: (..., H, W, C); kernels: (k, k, C) with k odd. Done in the Fourier domain on the
    padded image: O(HW log HW) whatever the kernel size.
    """
    k = kernels.shape[0]
    p = k // 2
    # Channels-first inside: the FFTs then run over contiguous axes (about 1.4x faster on CPU).
    xc = jnp.moveaxis(x, -1, -3)
    pad = [(0, 0)] * (xc.ndim - 2) + [(p, p), (p, p)]
    xp = jnp.pad(xc, pad, mode="edge")
    hp, wp = xp.shape[-2], xp.shape[-1]
    # Correlation = convolution with the flipped kernel; the toolbox kernels are
    # symmetric, but flip anyway so the function is right for any kernel.
    kern = jnp.asarray(np.moveaxis(kernels[::-1, ::-1, :], -1, 0), dtype=x.dtype)
    fx = jnp.fft.rfft2(xp)
    fk = _small_kernel_rfft2(kern, hp, wp)
    full = jnp.fft.irfft2(fx * fk, s=(hp, wp))
    # Circular convolution of the padded image: rows [k-1, hp) are free of wrap-around
    # and correspond to output pixels [0, H).
    return jnp.moveaxis(full[..., k - 1 :, k - 1 :], -3, -1).astype(x.dtype)


def mtf_filter(x: jax.Array, gains: Gains, ratio: int, size: int = 41) -> jax.Array:
    """Filter each band with the toolbox's MTF-matched Gaussian (``MTF.m``).

    Args:
      x: (..., H, W, C) image, any scale (DN or [0, 1]); linear operation.
      gains: per-band Nyquist gains, a ``Sensor`` or a sensor name.
      ratio: PAN/MS resolution ratio.
      size: kernel side (41 in the toolbox).

    Returns:
      (..., H, W, C) filtered image, same dtype; replicate boundary.
    """
    x = jnp.asarray(x)
    kernels = mtf_kernels(_resolve_gains(gains, x.shape[-1]), ratio, size)
    return _correlate_same_replicate(x, kernels)


def mtf_filter_pan(pan: jax.Array, sensor: str | Sensor | None, ratio: int, size: int = 41) -> jax.Array:
    """Filter a PAN image with its sensor's PAN MTF (``MTF_PAN.m``).

    Args:
      pan: (..., H, W, 1) panchromatic image, any scale.
      sensor: sensor name or ``Sensor`` (generic: gain 0.15).
      ratio: PAN/MS resolution ratio.
    """
    pan = jnp.asarray(pan)
    if pan.shape[-1] != 1:
        raise InputError(f"pan must have one band, got {pan.shape[-1]}")
    return _correlate_same_replicate(pan, mtf_kernels([get_sensor(sensor).pan_gnyq], ratio, size))


def decimate(x: jax.Array, ratio: int) -> jax.Array:
    """Keep every ``ratio``-th row/col starting at ``ratio // 2`` (toolbox phase).

    (..., H, W, C) -> (..., H // ratio, W // ratio, C) for H, W multiples of ratio.
    """
    s = ratio // 2
    return x[..., s::ratio, s::ratio, :]


def wald_degrade(ms: jax.Array, pan: jax.Array, sensor: str | Sensor | None, ratio: int = 4) -> tuple[jax.Array, jax.Array]:
    """Simulate a reduced-resolution pair (Wald protocol).

    Args:
      ms: (..., H, W, C) MS at the resolution to be degraded (becomes the GT).
      pan: (..., H*ratio', W*ratio', 1) or (..., H, W, 1) PAN; degraded the same way.
      sensor: sets the MS and PAN Nyquist gains.
      ratio: degradation factor.

    Returns:
      (lrms, pan_lr): MTF-filtered and decimated MS and PAN, same scale and dtype.
    """
    sensor = get_sensor(sensor)
    ms = jnp.asarray(ms)
    for what, a in (("ms", ms), ("pan", pan)):
        h, w = a.shape[-3], a.shape[-2]
        if h % ratio or w % ratio:
            raise InputError(f"{what} size {h}x{w} is not a multiple of the ratio {ratio}")
    lrms = decimate(mtf_filter(ms, sensor, ratio), ratio)
    pan_lr = decimate(mtf_filter_pan(pan, sensor, ratio), ratio)
    return lrms, pan_lr


def _circular_filter_axis(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
    """Circular correlation of ``x`` along ``axis`` with a symmetric odd-length FIR."""
    half = len(taps) // 2
    out = jnp.zeros_like(x)
    for i, c in enumerate(taps):
        if c != 0.0:
            out = out + c * jnp.roll(x, half - i, axis=axis)
    return out


def _upsample2_23tap(x: jax.Array, phase: int) -> jax.Array:
    """One factor-2 step: zero insertion at ``phase`` (0 or 1), then 23-tap along H and W."""
    *lead, h, w, c = x.shape
    up = jnp.zeros((*lead, 2 * h, 2 * w, c), dtype=x.dtype)
    up = up.at[..., phase::2, phase::2, :].set(x)
    up = _circular_filter_axis(up, CDF23, axis=-3)
    return _circular_filter_axis(up, CDF23, axis=-2)


def interp23tap(x: jax.Array, ratio: int) -> jax.Array:
    """The toolbox's ``interp23tap``: upsample by a power-of-two ``ratio``.

    Args:
      x: (..., h, w, C) low-resolution image, any scale (linear operation).
      ratio: a power of two (2, 4, 8, ...).

    Returns:
      (..., ratio*h, ratio*w, C), same dtype. The first factor-2 step puts the input
      samples at odd positions (MATLAB 2:2:end), later steps at even ones, which
      aligns the result with the ``x[2::4, 2::4]`` decimation for ratio 4.
    """
    ratio = int(ratio)
    if ratio < 1 or ratio & (ratio - 1):
        raise InputError(f"interp23tap needs a power-of-two ratio, got {ratio}; use interp_general")
    x = jnp.asarray(x)
    for step in range(int(np.log2(ratio))):
        x = _upsample2_23tap(x, phase=1 if step == 0 else 0)
    return x


@functools.lru_cache(maxsize=16)
def _general_taps(ratio: int, half_support: int = 11) -> np.ndarray:
    """Kaiser-windowed sinc interpolation taps for an integer factor ``ratio``."""
    n = np.arange(-half_support * ratio, half_support * ratio + 1)
    taps = np.sinc(n / ratio) * np.kaiser(len(n), 5.0)
    # Each polyphase branch sums to 1 so that constants stay constant.
    for phase in range(ratio):
        idx = np.nonzero((n - phase) % ratio == 0)[0]
        taps[idx] /= taps[idx].sum()
    return taps


def interp_general(x: jax.Array, ratio: int) -> jax.Array:
    """Upsample by any integer ``ratio`` with a Kaiser-windowed sinc FIR (circular boundary).

    For powers of two prefer :func:`interp23tap` (toolbox-exact). Samples land at
    offset ``ratio // 2`` within each ``ratio`` block, consistent with :func:`decimate`.

    Args:
      x: (..., h, w, C), any scale. ratio: integer >= 1.

    Returns:
      (..., ratio*h, ratio*w, C), same dtype.
    """
    ratio = int(ratio)
    if ratio < 1:
        raise InputError(f"ratio must be a positive integer, got {ratio}")
    if ratio == 1:
        return jnp.asarray(x)
    x = jnp.asarray(x)
    *lead, h, w, c = x.shape
    s = ratio // 2
    up = jnp.zeros((*lead, ratio * h, ratio * w, c), dtype=x.dtype)
    up = up.at[..., s::ratio, s::ratio, :].set(x)
    taps = _general_taps(ratio)
    up = _circular_filter_axis(up, taps, axis=-3)
    return _circular_filter_axis(up, taps, axis=-2)

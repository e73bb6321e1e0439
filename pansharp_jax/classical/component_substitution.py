"""Component substitution (CS): BT-H, GS, GSA and PCA, as in the MATLAB toolbox.

A CS method builds an intensity component ``I`` from the upsampled MS ``lms``, matches
the PAN to it, and injects the difference ``PAN' - I`` (the spatial detail) into every
band with a band gain. Each function below reproduces one file of the pansharpening
toolbox of Vivone et al. as shipped in DLPan-Toolbox (folder
``02-Test-toolbox-for-traditional-and-DL(Matlab)``), quirks included; PCA, which that
copy does not ship, reproduces ``PCA.m`` of Vivone's original toolbox (2014/2015).

Notation: ``lms`` (H, W, C) is the MS upsampled by ``interp23tap``, ``pan`` (H, W, 1),
``lrms`` (h, w, C). ``mean`` / ``std`` are over all pixels of one band (MATLAB's
``mean2`` / ``std2``; ``std`` uses N - 1), ``cov`` and ``var`` likewise use N - 1
(it cancels in their ratio). ``X0`` is ``X`` minus its mean.

BT-H (``BT-H/BroveyRegHazeMin.m``; Brovey with haze correction, Lolli et al. 2017):
  1. Haze ``L_k`` per band: for C = 4 bands, ``L = [0.95, 0.45, 0.40, 0.05]`` times the
     1st percentile of each ``lms`` band (MATLAB ``prctile``, i.e. linear
     interpolation with the k-th of n sorted values at percent 100 (k - 0.5) / n); for
     any other band count, the minimum of each ``lms`` band. The 4-band coefficients
     assume the toolbox's band order B, G, R, NIR (as every 4-band sensor here has).
  2. ``pan_lp``: the PAN low-passed by ``LPfilterGauss`` (a 41 x 41 Gaussian with gain
     0.3 at ``1 / (2 ratio)`` made a FIR by ``fwind1`` with a Kaiser window, replicate
     border; NOT the sensor's MTF: BT-H ignores ``sensor``). Note the toolbox's
     ``alpha = sqrt((N fcut / 2)^2 / (-2 ln 0.3))`` uses N = 41 where ``genMTF`` uses
     N - 1 = 40; reproduced.
  3. ``w = argmin || lms w - pan_lp ||`` (global least squares, no intercept; the
     regression uses ``lms`` itself, not ``lms - L``), ``I = sum_k w_k (lms_k - L_k)``.
  4. ``P = (pan - mean(pan_lp)) std(I) / std(pan_lp) + mean(I)`` (the PAN equalised
     with the statistics of its LOW-PASS version).
  5. ``fused_k = max(lms_k - L_k, 0) P / (I + eps) + L_k`` with MATLAB's ``eps`` =
     2.2e-16 added as an absolute number (so scale equivariance holds to ~1e-16).

GS (``GS/GS.m``; Gram-Schmidt, Laben and Brower 2000, mode "average"):
  1. ``I = mean_k lms_k`` (plain band average), ``I0 = I - mean(I)``.
  2. ``P = (pan - mean(pan)) std(I0) / std(pan) + mean(I0)``.
  3. ``g_k = cov(I0, lms0_k) / var(I0)``.
  4. ``fused_k = lms0_k + g_k (P - I0)``, then mean equalisation
     ``fused_k - mean(fused_k) + mean(lms_k)``.

GSA (``GS/GSA.m``; adaptive GS, Aiazzi et al. 2007):
  1. ``pan_lr = LPfilterPlusDec(pan - mean(pan), ratio)``: the mean-removed PAN
     low-passed by the toolbox's undecimated wavelet (``ndwt2_working`` /
     ``indwt2_working`` with the 5-tap B3-like filter ``[1 4 6 4 1] / 16`` on
     ``ceil(log2(ratio))`` levels, all detail planes zeroed) and then sampled by
     ``imresize(., 1/ratio, 'nearest')``, which keeps 0-based rows/cols
     ``ratio // 2, ratio // 2 + ratio, ...`` (the same phase as the Wald decimation).
  2. ``[w, b] = argmin || [lrms0, 1] [w; b] - pan_lr ||`` on the LOW-resolution grid,
     with ``lrms0`` the ORIGINAL low-resolution MS minus its per-band means (not the
     decimated ``lms``); global least squares with an intercept.
  3. ``I = sum_k w_k lms0_k + b`` (weights applied to the mean-removed ``lms``),
     ``I0 = I - mean(I)``.
  4. ``g_k = cov(I0, lms0_k) / var(I0)``.
  5. ``fused_k = lms0_k + g_k ((pan - mean(pan)) - I0)``, then mean equalisation
     ``fused_k - mean(fused_k) + mean(lms_k)``. Unlike GS, GSA does NOT equalise the
     PAN's standard deviation to ``I``: only its mean is removed.

PCA (``PCA.m`` of the original toolbox; Chavez and Kwarteng 1989):
  1. Principal components of the ``lms`` pixels (MATLAB ``princomp``/``pca``: centred
     data, components sorted by decreasing variance, each loading vector signed so
     that its largest-magnitude entry is positive): ``S = (lms - mean) W``.
  2. ``I = S_1``, ``P = (pan - mean(pan)) std(I) / std(pan) + mean(I)``.
  3. ``S_1 <- P``, ``fused = S W^T`` (the inverse transform; the MS means are NOT
     added back here), then the mean equalisation
     ``fused_k - mean(fused_k) + mean(lms_k)`` restores them.
  The loadings come from ``eigh`` of the C x C covariance instead of the toolbox's
  SVD of the N x C data: the same vectors up to rounding (and the same sign rule).

Implementation notes (all methods):
  * Least squares use ``jnp.linalg.lstsq`` (SVD, minimum-norm) with a cut-off of
    ``C`` x machine epsilon on the singular values: equal to MATLAB's QR backslash for
    full-rank data (to rounding), and finite where a band is constant or duplicated
    (where MATLAB warns and returns a basic solution).
  * No clipping anywhere, as in the toolbox.
  * Checked on wv3_cdif (float64 DN): GSA and BT-H equal the toolbox's outputs to
    ~2e-11 DN (tests/test_classical_cs.py); that run was GNU Octave, whose
    ``imresize(., 1/4, 'nearest')`` evidently samples the same phase as MATLAB.
  * Scale: all four methods are scale-equivariant (regressions, ratios, linear maps):
    DN in, DN out; [0, 1] in, [0, 1] out. Precision follows the input dtype; float64
    under ``jax.enable_x64(True)`` reproduces the toolbox to rounding.
  * ``sensor`` is unused: none of these toolbox functions takes a sensor. ``ratio``
    is used by BT-H (low-pass cut-off) and GSA (wavelet levels and sampling).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.classical._common import classical_method
from pansharp_jax.data import wald
from pansharp_jax.data.sensors import Sensor

# MATLAB's eps (double precision), added to the BT-H denominator like the toolbox.
_MATLAB_EPS = float(np.finfo(np.float64).eps)

# BT-H haze coefficients for 4-band images (B, G, R, NIR) and their percentile.
_HAZE_COEFFS_4 = (0.95, 0.45, 0.40, 0.05)
_HAZE_PRCTILE = 1.0

# The 5-tap low-pass of the toolbox's LPfilter / LPfilterPlusDec wavelet.
_B3_TAPS = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


# --------------------------------------------------------------------------- helpers


def _band_mean(x: jax.Array) -> jax.Array:
    """Per-band mean over the two spatial axes: (H, W, C) -> (C,) (MATLAB ``mean2``)."""
    return jnp.mean(x, axis=(0, 1))


def _band_std(x: jax.Array) -> jax.Array:
    """Per-band sample std (N - 1) over the spatial axes: (H, W, C) -> (C,) (``std2``)."""
    return jnp.std(x, axis=(0, 1), ddof=1)


def _lstsq(a: jax.Array, b: jax.Array) -> jax.Array:
    """Least-squares solution of ``a x = b`` (a: (N, K), b: (N,)) -> (K,).

    MATLAB's ``a \\ b`` for full-rank ``a``; minimum-norm where ``a`` is rank-deficient.
    """
    rcond = float(jnp.finfo(a.dtype).eps) * a.shape[1]
    return jnp.linalg.lstsq(a, b, rcond=rcond)[0]


def _cov_over_var(i0: jax.Array, bands0: jax.Array) -> jax.Array:
    """``cov(I0, band_k) / var(I0)`` for each band: (H, W), (H, W, C) -> (C,).

    MATLAB's ``cov`` / ``var`` remove the means again (even of already mean-free
    data); so do we. The N - 1 normalisations cancel.
    """
    di = i0 - jnp.mean(i0)
    db = bands0 - _band_mean(bands0)
    return jnp.einsum("hw,hwc->c", di, db) / jnp.sum(di * di)


def _mean_equalise(fused: jax.Array, lms: jax.Array) -> jax.Array:
    """The toolbox's final step: ``fused_k - mean(fused_k) + mean(lms_k)``."""
    return fused - _band_mean(fused) + _band_mean(lms)


def _prctile(x: jax.Array, p: float) -> jax.Array:
    """MATLAB ``prctile(x(:), p)``: k-th of n sorted values at 100 (k - 0.5) / n, linear
    interpolation between them, clamped to the extremes. x: any shape -> scalar."""
    v = jnp.sort(x.reshape(-1))
    n = v.shape[0]
    pos = min(max(n * p / 100.0 + 0.5, 1.0), float(n))  # 1-based, static
    lo = int(np.floor(pos))
    hi = min(lo + 1, n)
    frac = pos - lo
    return v[lo - 1] + frac * (v[hi - 1] - v[lo - 1])


@functools.lru_cache(maxsize=16)
def _lp_gauss_kernel(ratio: int, size: int = 41, gnyq: float = 0.3) -> np.ndarray:
    """The toolbox's ``LPfilterGauss`` kernel: (size, size, 1), float64, read-only.

    Like ``genMTF`` but with the Gaussian width computed from ``size`` (41) rather
    than ``size - 1`` (the toolbox's own formula), fixed gain 0.3.
    """
    fcut = 1.0 / ratio
    sigma = np.sqrt((size * (fcut / 2.0)) ** 2 / (-2.0 * np.log(gnyq)))
    hd = wald._gaussian_matlab(size, sigma)
    hd = hd / hd.max()
    kernel = wald._fwind1(hd, np.kaiser(size, 0.5))[:, :, None]
    kernel.setflags(write=False)
    return kernel


def lp_filter_gauss(pan: jax.Array, ratio: int) -> jax.Array:
    """The toolbox's ``LPfilterGauss(I_PAN, ratio)``: (H, W, 1) -> (H, W, 1), same dtype.

    Correlation with :func:`_lp_gauss_kernel`, replicate border, output the input size.
    """
    return wald._correlate_same_replicate(pan, _lp_gauss_kernel(int(ratio)))


def _valid_fir(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
    """'valid' filtering along ``axis`` with a symmetric FIR (length n -> n - len + 1)."""
    k = len(taps)
    n = x.shape[axis] - k + 1
    out = 0.0
    for i, c in enumerate(taps):
        out = out + c * jax.lax.slice_in_dim(x, i, i + n, axis=axis)
    return out


def wavelet_lowpass(x: jax.Array, ratio: int) -> jax.Array:
    """The toolbox's ``LPfilter`` (undecimated wavelet, details zeroed): (H, W, C) -> same.

    ``ndwt2_working`` / ``indwt2_working`` with the filters ``sqrt(2) [1 4 6 4 1] / 16``
    for analysis and synthesis on ``L = ceil(log2(ratio))`` levels (the filters are NOT
    dilated between levels). With the details set to zero only the approximation path
    remains, and it is separable. Per axis, each analysis level pads the signal by 4
    samples on each side by half-point symmetry (``x4 x3 x2 x1 | x1 ... xn | xn ...``)
    and keeps the 'valid' part of the 5-tap convolution, so the signal grows by 4;
    each synthesis level is a 'valid' 5-tap convolution that shrinks it by 4 (the
    centred crop of MATLAB's full convolution). The sqrt(2) factors and the ``/ 4``
    of each 2-D synthesis cancel, leaving unit-gain taps.
    """
    levels = int(np.ceil(np.log2(ratio))) if ratio > 1 else 0
    pad = len(_B3_TAPS) - 1
    taps = _B3_TAPS.astype(x.dtype)
    for axis in (0, 1):
        y = x
        for _ in range(levels):
            widths = [(0, 0)] * y.ndim
            widths[axis] = (pad, pad)
            y = _valid_fir(jnp.pad(y, widths, mode="symmetric"), taps, axis)
        for _ in range(levels):
            y = _valid_fir(y, taps, axis)
        x = y
    return x


def lp_filter_plus_dec(x: jax.Array, ratio: int) -> jax.Array:
    """The toolbox's ``LPfilterPlusDec``: :func:`wavelet_lowpass` then
    ``imresize(., 1/ratio, 'nearest')``, i.e. 0-based rows/cols ``ratio//2 :: ratio``.

    (H, W, C) -> (ceil(H / ratio), ceil(W / ratio), C).
    """
    return wald.decimate(wavelet_lowpass(x, ratio), ratio)


# --------------------------------------------------------------------------- methods


@classical_method("bt_h")
def bt_h(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """BT-H (``BroveyRegHazeMin``) on one image: (H, W, C) fused, the scale of the input."""
    del lrms, sensor
    h, w, c = lms.shape
    if c == 4:
        haze = jnp.stack([coef * _prctile(lms[..., k], _HAZE_PRCTILE) for k, coef in enumerate(_HAZE_COEFFS_4)])
    else:
        haze = jnp.min(lms, axis=(0, 1))
    pan_lp = lp_filter_gauss(pan, ratio)
    weights = _lstsq(lms.reshape(h * w, c), pan_lp.reshape(h * w))
    intensity = jnp.sum((lms - haze) * weights, axis=-1)  # (H, W)
    pan_eq = (pan[..., 0] - jnp.mean(pan_lp)) * (jnp.std(intensity, ddof=1) / jnp.std(pan_lp, ddof=1)) + jnp.mean(
        intensity
    )
    ms_dehazed = jnp.maximum(lms - haze, 0.0)
    return ms_dehazed * (pan_eq / (intensity + _MATLAB_EPS))[..., None] + haze


def _gs_inject(lms: jax.Array, lms0: jax.Array, i0: jax.Array, pan_detail: jax.Array) -> jax.Array:
    """Shared GS/GSA end: ``lms0_k + g_k (pan_detail - I0)`` then mean equalisation."""
    gains = _cov_over_var(i0, lms0)
    fused = lms0 + (pan_detail - i0)[..., None] * gains
    return _mean_equalise(fused, lms)


@classical_method("gs")
def gs(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """GS (``GS.m``) on one image: (H, W, C) fused, the scale of the input."""
    del lrms, sensor, ratio
    lms0 = lms - _band_mean(lms)
    intensity = jnp.mean(lms, axis=-1)
    i0 = intensity - jnp.mean(intensity)
    p = pan[..., 0]
    pan_eq = (p - jnp.mean(p)) * (jnp.std(i0, ddof=1) / jnp.std(p, ddof=1)) + jnp.mean(i0)
    return _gs_inject(lms, lms0, i0, pan_eq)


@classical_method("gsa")
def gsa(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """GSA (``GSA.m``) on one image: (H, W, C) fused, the scale of the input."""
    del sensor
    h, w, c = lrms.shape
    lms0 = lms - _band_mean(lms)
    lrms0 = lrms - _band_mean(lrms)
    pan0 = pan - jnp.mean(pan)
    pan_lr = lp_filter_plus_dec(pan0, ratio)  # (h, w, 1)
    design = jnp.concatenate([lrms0.reshape(h * w, c), jnp.ones((h * w, 1), lrms.dtype)], axis=1)
    coefs = _lstsq(design, pan_lr.reshape(h * w))
    intensity = jnp.sum(lms0 * coefs[:c], axis=-1) + coefs[c]
    i0 = intensity - jnp.mean(intensity)
    return _gs_inject(lms, lms0, i0, pan0[..., 0])


def pca_loadings_from_cov(cov: jax.Array) -> jax.Array:
    """Principal axes of a (C, C) covariance -> W (C, C), columns by decreasing
    variance, each column signed so its largest-magnitude entry is positive (MATLAB).
    Shared by :func:`pca` and the tiled PCA of :mod:`pansharp_jax.classical.streaming`."""
    _, vecs = jnp.linalg.eigh(cov)  # ascending eigenvalues
    vecs = vecs[:, ::-1]
    pivot = jnp.take_along_axis(vecs, jnp.argmax(jnp.abs(vecs), axis=0)[None, :], axis=0)
    return vecs * jnp.where(pivot < 0, -1.0, 1.0).astype(cov.dtype)


def _pca_loadings(x: jax.Array) -> jax.Array:
    """Principal axes of the rows of ``x`` (N, C) -> W (C, C) (see :func:`pca_loadings_from_cov`)."""
    xc = x - jnp.mean(x, axis=0)
    cov = xc.T @ xc / (x.shape[0] - 1)
    return pca_loadings_from_cov(cov)


@classical_method("pca")
def pca(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """PCA (``PCA.m``) on one image: (H, W, C) fused, the scale of the input."""
    del lrms, sensor, ratio
    h, w, c = lms.shape
    x = lms.reshape(h * w, c)
    loadings = _pca_loadings(x)
    scores = (x - jnp.mean(x, axis=0)) @ loadings
    first = scores[:, 0]
    p = pan.reshape(h * w)
    pan_eq = (p - jnp.mean(p)) * (jnp.std(first, ddof=1) / jnp.std(p, ddof=1)) + jnp.mean(first)
    fused = scores.at[:, 0].set(pan_eq) @ loadings.T
    return _mean_equalise(fused.reshape(h, w, c), lms)

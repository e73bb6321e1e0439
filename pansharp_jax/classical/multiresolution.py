"""Multiresolution analysis (MRA): MTF-GLP, MTF-GLP-HPM, MTF-GLP-FS and AWLP.

Every MRA method injects the PAN's high frequencies, ``P - P_L`` (PAN minus a low-pass
version of it), into the upsampled MS ``M`` (``lms``, the toolbox's ``interp23tap``).
The methods differ in how ``P`` is equalised, how ``P_L`` is made and how the details
are weighted. Per band ``b``, with ``mean``/``std`` over all pixels of a band (``std``
with the ``n - 1`` normalisation of MATLAB's ``std2``) and ``eps = 2**-52``:

* **MTF-GLP** (toolbox ``GLP/MTF_GLP.m``), additive injection:

  1. equalisation: ``P_b = (P - mean(P)) * std(M_b) / std(G(P)) + mean(M_b)``, where
     ``G`` is the toolbox's ``LPfilterGauss``: a 41x41 Gaussian FIR whose response at
     the MS Nyquist frequency is 0.3 (window method, Kaiser window), replicate border;
  2. GLP low-pass: ``P_L,b = interp23tap(decimate(MTF_b(P_b)))``: the band's MTF filter
     (``genMTF``, sensor Nyquist gains), nearest-neighbour decimation by ``ratio``
     (``imresize(., 1/ratio, 'nearest')`` keeps rows/cols ``ratio//2 :: ratio``) and
     the same interpolator that made ``M``;
  3. ``F_b = M_b + P_b - P_L,b``.

* **MTF-GLP-HPM** (toolbox ``GLP/MTF_GLP_HPM.m``), high-pass modulation: steps 1-2 as
  MTF-GLP, then ``F_b = M_b * (P_b / (P_L,b + eps))``.

* **MTF-GLP-HPM, guarded** (ours, not in the toolbox; :func:`mtf_glp_hpm_guarded`): as
  MTF-GLP-HPM written as ``F_b = M_b + (M_b / D_b) * (P_b - P_L,b)`` with the denominator
  floored, ``D_b = max(P_L,b, tau_b)``, ``tau_b = 0.05 * mean(|M_b|)`` (plus the
  dtype's smallest normal number so that an all-zero band gives 0, not NaN), and
  ``std(G(P))`` floored at that smallest number (a constant PAN then gives ``M_b`` over
  the MTF kernel's DC gain, not NaN).
  Wherever ``P_L,b >= tau_b`` it equals MTF-GLP-HPM up to rounding, elsewhere
  ``|F_b / M_b - 1| <= |P_b - P_L,b| / tau_b``. On the ``wv3_cdif`` test scene the floor
  acts on 30 pixels of band 5 (red), all in the 4th and 5th rows from the top (see the
  quirk below): the border-cut metrics are the toolbox's, the uncut ERGAS drops from
  5.31 to 4.81. On ``pleiades_cdif`` it never acts.

* **MTF-GLP-FS** (toolbox ``GLP/MTF_GLP_FS.m``), full-scale regression injection: no
  equalisation; ``P_L,b = interp23tap(decimate(MTF_b(P)))``,
  ``g_b = cov(M_b, P) / cov(P_L,b, P)`` (over all pixels at full scale),
  ``F_b = M_b + g_b * (P - P_L,b)``.

* **AWLP** (toolbox ``AWLP/AWLP.m``), additive wavelet luminance proportional:

  1. ``I = mean over bands of M``; ``R_b = M_b / (I + eps)``;
  2. ``P_b = (P - mean(P)) * std(M_b) / std(B(P)) + mean(M_b)`` with
     ``B(P) = imresize(imresize(P, 1/ratio), ratio)`` (MATLAB bicubic, antialiased);
  3. ``A_b``: the approximation of ``P_b`` by the toolbox's ``ndwt2_working`` /
     ``indwt2_working`` pair, ``ceil(log2(ratio))`` levels, all detail sub-bands set
     to zero. Analysis, per level and per axis (width first, then height): pad 4
     samples by half-sample symmetric extension, filter with ``sqrt(2) [1 4 6 4 1]/16``
     keeping only the fully-overlapping outputs (the image grows by 4 pixels per axis
     per level: the filters are *not* dilated between levels). Synthesis, per level
     (height, then width): the same 5-tap filter, fully-overlapping outputs only (the
     image shrinks by 4), divided by 4;
  4. ``F_b = (P_b - A_b) * R_b + M_b``.

  ``sensor`` is unused: AWLP's filters do not depend on it.

Toolbox quirks reproduced, not fixed:

* MTF-GLP-HPM divides by ``P_L,b + eps`` with the *absolute* ``eps = 2**-52``: where the
  low-pass ``P_L,b`` comes near or crosses zero the output explodes (up to 1/eps times
  the MS; inf/NaN for an exact zero). This happens where equalisation makes ``P_b``
  negative (a dark PAN region and a high-contrast MS band), and also with a positive
  ``P_b``: the MTF filter's and the 23-tap interpolator's negative lobes, and the
  interpolator's circular boundary (which mixes the opposite image border in), can take
  the low-pass of a dark border region below zero. On ``wv3_cdif`` (DN) band 5 has
  ``P_L`` down to -8.4 DN in its 4th and 5th rows (``P_b`` >= 41 DN everywhere), where
  HPM gives up to 394 times the MS (11790 DN for an MS of 30 DN). The toolbox's border
  cut (21 pixels) hides this from its metrics; the uncut ERGAS shows it (5.31 against
  5.06 for MTF-GLP). There, a rounding difference of ~1e-12 DN in ``P_L`` (summation
  order: FFT vs direct filtering) becomes 3e-7 DN in the output: such pixels match the
  toolbox to ~1e-11 *relative*, not 1e-9 DN. Use :func:`mtf_glp_hpm_guarded` to avoid
  the blow-up. The absolute ``eps`` also makes HPM and AWLP scale-equivariant only up
  to terms of relative size ``eps / value`` (1e-16 on DN).
* The equalisation of MTF-GLP/-HPM uses ``LPfilterGauss`` (Nyquist gain 0.3 whatever the
  sensor, Gaussian width computed with ``N = 41`` where ``genMTF`` uses ``N - 1 = 40``),
  not the sensor's MTF; AWLP's uses a bicubic down/up-sampling instead. Both as in the
  toolbox.
* The MTF kernels are not renormalised (their DC gain is not exactly 1), as in
  :mod:`pansharp_jax.data.wald`.
* AWLP's wavelet filters are used undilated at every level and the approximation has its
  own border handling (symmetric padding at each analysis level, none at synthesis):
  it is not an a-trous transform; reproduced literally.

Deviation: for ratios that are not powers of two the low-pass is upsampled with
:func:`pansharp_jax.classical._common.upsample_ms` (``interp_general``), as is ``M``; the
toolbox's ``interp23tap`` is wrong there (it loops ``ratio/2`` times). Ratios 2 and 4
are toolbox-exact.

Shapes: the cores take ``lms`` (H, W, C), ``pan`` (H, W, 1), ``lrms`` (h, w, C) and
return (H, W, C) in the scale and dtype of the inputs (float64 under
``jax.enable_x64(True)`` reproduces the toolbox to ~1e-12 DN).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.classical._common import classical_method, upsample_ms
from pansharp_jax.data import wald
from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.data.sensors import Sensor

# MATLAB's ``eps`` (double precision), added as an absolute constant by the toolbox.
_EPS = float(np.finfo(np.float64).eps)
# Guarded HPM: the denominator floor, as a fraction of the band's mean.
_HPM_FLOOR = 0.05
# ``LPfilterGauss``: fixed Nyquist gain and kernel size.
_LPGAUSS_GNYQ = 0.3
_KERNEL_SIZE = 41
# AWLP: the B3-spline taps of the toolbox's wavelet filters, times sqrt(2).
_AWLP_TAPS = math.sqrt(2.0) * np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


# ----------------------------------------------------------------------------- helpers
def _band_mean(x: jax.Array) -> jax.Array:
    """Mean of each band over its pixels: (H, W, C) -> (C,)."""
    return jnp.mean(x, axis=(-3, -2))


def _band_std(x: jax.Array) -> jax.Array:
    """MATLAB ``std2`` of each band (normalised by n - 1): (H, W, C) -> (C,)."""
    return jnp.std(x, axis=(-3, -2), ddof=1)


@functools.lru_cache(maxsize=16)
def _lpgauss_kernel(ratio: int) -> np.ndarray:
    """The toolbox's ``LPfilterGauss`` kernel, (41, 41, 1) float64.

    Like ``genMTF`` with gain 0.3, except that the Gaussian's width is computed with
    ``N`` instead of ``N - 1``: ``alpha = sqrt((N * fcut / 2)**2 / (-2 ln 0.3))``.
    """
    n = _KERNEL_SIZE
    alpha = np.sqrt((n * (1.0 / ratio) / 2.0) ** 2 / (-2.0 * np.log(_LPGAUSS_GNYQ)))
    hd = wald._gaussian_matlab(n, alpha)
    hd = hd / hd.max()
    kernel = wald._fwind1(hd, np.kaiser(n, 0.5))[..., None]
    kernel.setflags(write=False)
    return kernel


def _lpgauss(pan: jax.Array, ratio: int) -> jax.Array:
    """``LPfilterGauss(pan, ratio)``: (H, W, 1) -> (H, W, 1), replicate border."""
    return wald._correlate_same_replicate(pan, _lpgauss_kernel(int(ratio)))


def _equalize(pan: jax.Array, lms: jax.Array, pan_lowpass_std: jax.Array) -> jax.Array:
    """``(P - mean(P)) * std(M_b) / pan_lowpass_std + mean(M_b)``: (H, W, 1) -> (H, W, C)."""
    return (pan - jnp.mean(pan)) * (_band_std(lms) / pan_lowpass_std) + _band_mean(lms)


def _glp_lowpass(x: jax.Array, gains: tuple[float, ...], ratio: int) -> jax.Array:
    """GLP low-pass of each band: MTF filter, ``ratio//2::ratio`` decimation, re-interpolation.

    x: (H, W, C) -> (H, W, C); ``gains`` are the per-band MTF Nyquist gains.
    """
    return upsample_ms(wald.decimate(wald.mtf_filter(x, gains, ratio), ratio), ratio)


def _glp_equalized(lms: jax.Array, pan: jax.Array, sensor: Sensor, ratio: int) -> tuple[jax.Array, jax.Array]:
    """Steps 1-2 of MTF-GLP(-HPM): the equalised PAN per band and its GLP low-pass."""
    p_eq = _equalize(pan, lms, jnp.std(_lpgauss(pan, ratio), ddof=1))
    return p_eq, _glp_lowpass(p_eq, sensor.gains(lms.shape[-1]), ratio)


def _filter_valid(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
    """Fully-overlapping (MATLAB ``'valid'``) filtering with symmetric ``taps`` along ``axis``."""
    k = len(taps)
    n = x.shape[axis] - k + 1
    out = None
    for i, c in enumerate(taps):
        term = float(c) * jax.lax.slice_in_dim(x, i, i + n, axis=axis)
        out = term if out is None else out + term
    return out


def _awlp_approximation(x: jax.Array, levels: int) -> jax.Array:
    """The toolbox's ``indwt2_working(ndwt2_working(x, levels, WF) with zeroed details)``.

    x: (H, W, C) -> (H, W, C). See the module docstring (AWLP, step 3).
    """
    half = len(_AWLP_TAPS) - 1  # symmetric extension of ``length(filter) - 1`` samples
    rows, cols = x.ndim - 3, x.ndim - 2
    for _ in range(levels):  # analysis: width first, then height; grows by 4 per axis
        for axis in (cols, rows):
            pad = [(0, 0)] * x.ndim
            pad[axis] = (half, half)
            x = _filter_valid(jnp.pad(x, pad, mode="symmetric"), _AWLP_TAPS, axis)
    for _ in range(levels):  # synthesis: height first, then width; shrinks by 4 per axis
        x = _filter_valid(_filter_valid(x, _AWLP_TAPS, rows), _AWLP_TAPS, cols) / 4.0
    return x


# ----------------------------------------------------------------------------- methods
@classical_method("mtf_glp")
def mtf_glp(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """MTF-GLP (toolbox ``MTF_GLP.m``) on one image: ``F_b = M_b + P_b - P_L,b``.

    lms (H, W, C), pan (H, W, 1), lrms (h, w, C) unused -> (H, W, C), input scale.
    """
    del lrms
    p_eq, p_low = _glp_equalized(lms, pan, sensor, ratio)
    return lms + p_eq - p_low


@classical_method("mtf_glp_hpm")
def mtf_glp_hpm(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """MTF-GLP-HPM (toolbox ``MTF_GLP_HPM.m``): ``F_b = M_b * (P_b / (P_L,b + eps))``.

    Reproduces the toolbox, including its blow-up where ``P_L,b`` is ~0 (see
    :func:`mtf_glp_hpm_guarded`). lms (H, W, C), pan (H, W, 1) -> (H, W, C).
    """
    del lrms
    p_eq, p_low = _glp_equalized(lms, pan, sensor, ratio)
    return lms * (p_eq / (p_low + _EPS))


@classical_method("mtf_glp_hpm_guarded")
def mtf_glp_hpm_guarded(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """MTF-GLP-HPM with its denominator floored at 5% of the band mean (not in the toolbox).

    ``F_b = M_b + M_b / max(P_L,b, tau_b) * (P_b - P_L,b)``, ``tau_b = 0.05 mean(|M_b|)``:
    finite and bounded wherever the inputs are; equal to MTF-GLP-HPM where
    ``P_L,b >= tau_b``. lms (H, W, C), pan (H, W, 1) -> (H, W, C), input scale.
    """
    del lrms
    tiny = jnp.finfo(lms.dtype).tiny
    std_low = jnp.std(_lpgauss(pan, ratio), ddof=1)
    p_eq = _equalize(pan, lms, jnp.maximum(std_low, tiny))
    p_low = _glp_lowpass(p_eq, sensor.gains(lms.shape[-1]), ratio)
    tau = _HPM_FLOOR * _band_mean(jnp.abs(lms)) + tiny
    return lms + (lms / jnp.maximum(p_low, tau)) * (p_eq - p_low)


@classical_method("mtf_glp_fs")
def mtf_glp_fs(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """MTF-GLP-FS (toolbox ``MTF_GLP_FS.m``): ``F_b = M_b + g_b (P - P_L,b)``.

    ``g_b = cov(M_b, P) / cov(P_L,b, P)`` at full scale. lms (H, W, C), pan (H, W, 1)
    -> (H, W, C), input scale.
    """
    del lrms
    nb = lms.shape[-1]
    p_low = _glp_lowpass(jnp.broadcast_to(pan, lms.shape), sensor.gains(nb), ratio)
    p_c = pan - jnp.mean(pan)
    # The 1/(n-1) of both covariances cancels.
    cov_ms = jnp.sum((lms - _band_mean(lms)) * p_c, axis=(-3, -2))
    cov_low = jnp.sum((p_low - _band_mean(p_low)) * p_c, axis=(-3, -2))
    return lms + (cov_ms / cov_low) * (pan - p_low)


@classical_method("awlp")
def awlp(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """AWLP (toolbox ``AWLP.m``): ``F_b = (P_b - A(P_b)) * M_b / (mean_b(M) + eps) + M_b``.

    lms (H, W, C), pan (H, W, 1) -> (H, W, C), input scale; ``sensor`` is unused.
    """
    del lrms, sensor
    nb = lms.shape[-1]
    intensity_ratio = lms / (jnp.sum(lms, axis=-1, keepdims=True) / nb + _EPS)
    pan_lr = imresize_bicubic(imresize_bicubic(pan, 1.0 / ratio), float(ratio))
    p_eq = _equalize(pan, lms, jnp.std(pan_lr, ddof=1))
    levels = max(int(math.ceil(math.log2(ratio))), 0)
    details = p_eq - _awlp_approximation(p_eq, levels)
    return details * intensity_ratio + lms

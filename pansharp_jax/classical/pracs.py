"""PRACS: partial replacement adaptive component substitution (Choi, Yu and Kim, TGRS 2011).

Reproduces the toolbox's ``PRACS/PRACS.m`` (Vivone et al., as shipped in DLPan-Toolbox).
``ms`` is the upsampled MS (``I_MS``), ``P`` the PAN; statistics (mean, standard
deviation with N - 1, correlation ``corr2``) are over all pixels of a band:

  1. Histogram matching: ``hm_k = max(0, (ms_k - mean(ms_k)) * std(P) / std(ms_k) + mean(P))``
     (the toolbox writes it as ``(b - mean(b) + mean(P)/std(P)*std(b)) * std(P)/std(b)``,
     then sets negative values to 0).
  2. Low-resolution PAN: ``P_l = imresize(imresize(P, 1/ratio), ratio)`` (MATLAB bicubic,
     antialiased when shrinking).
  3. Initial intensity ``I_l``: least-squares fit (with intercept) of ``P_l`` on
     ``[1, hm_1 .. hm_C]``, evaluated on the same regressors (MATLAB ``regress``).
  4. Partial replacement: ``cc_k = corr(I_l, hm_k)``; ``I_h_k = cc_k P + (1 - cc_k) hm_k``.
  5. Band-dependent intensities ``I_l'_k``: least-squares fit (with intercept) of
     ``imresize(imresize(I_h_k, 1/ratio), ratio)`` on ``[1, hm_1 .. hm_C]``.
  6. Details: ``delta_k = I_h_k - I_l'_k - (mean(I_h_k) - mean(I_l'_k))``.
  7. Global weights: ``w_k = beta * corr(I_l'_k, ms_k) * std(ms_k) / mean_j std(ms_j)``
     with ``beta = 0.95`` (the toolbox's value "for 11-bit data"; it keeps it for every
     sensor, and so do we).
  8. Local instability adjustment: ``L_k = 1 - |1 - corr(I_l, ms_k) * ms_k / I_l'_k|``
     (note: ``I_l``, the initial intensity, in the correlation, and the original ``ms_k``,
     not ``hm_k``, in the ratio, exactly as the toolbox).
  9. ``fused_k = ms_k + w_k * L_k * delta_k``.

Deviations and quirks:
  * The regressions are solved on centred data (``y - mean(y)`` on ``X - mean(X)``, the
    intercept recovered from the means) by QR: the same fitted values as MATLAB's
    ``regress`` on ``[ones, X]`` in exact arithmetic, better conditioned in float32.
  * The toolbox's ``beta`` comment mentions 1.95 for 8-bit data; that variant is not
    exposed (``beta`` is a constant of the method, as in the toolbox).
  * ``L_k`` divides by ``I_l'_k``: pixels where that intensity is near zero (possible in
    dark scenes after the histogram matching clips at 0) give huge values, as in the
    toolbox. A constant band (zero standard deviation) gives NaN, as in the toolbox.
  * ``lrms`` and ``sensor`` are not used (PRACS works on the upsampled MS only).

Scale: every step is homogeneous (linear maps, ratios of standard deviations,
correlations, clipping at 0, a ratio of two images), so the method is scale-equivariant:
DN in, DN out; [0, 1] in, [0, 1] out. Output not clipped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from pansharp_jax.classical._common import classical_method
from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.data.sensors import Sensor

#: The toolbox's weight factor (``beta = 0.95; % for 11-bit data``).
BETA = 0.95


def _std(x: jax.Array) -> jax.Array:
    """Per-band standard deviation over pixels, N - 1 normalisation (MATLAB ``std2``). x: (n, K)."""
    return jnp.std(x, axis=0, ddof=1)


def _corr(a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-column Pearson correlation (MATLAB ``corr2``) of (n, K) arrays (broadcasting)."""
    ac = a - a.mean(axis=0)
    bc = b - b.mean(axis=0)
    return (ac * bc).sum(axis=0) / jnp.sqrt((ac * ac).sum(axis=0) * (bc * bc).sum(axis=0))


def _fit_with_intercept(x: jax.Array, y: jax.Array) -> jax.Array:
    """Fitted values of the least-squares regression of each column of y on [1, x].

    x: (n, p) regressors; y: (n, q) responses -> (n, q). Centred QR solve.
    """
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xc = x - xm
    q, r = jnp.linalg.qr(xc, mode="reduced")
    coef = jsl.solve_triangular(r, q.T @ (y - ym), lower=False)
    return ym + xc @ coef


def _low_pass(x: jax.Array, ratio: int) -> jax.Array:
    """``imresize(imresize(x, 1/ratio), ratio)`` per band, (H, W, K) -> (H, W, K)."""
    return imresize_bicubic(imresize_bicubic(x, 1.0 / ratio), float(ratio))


@classical_method("pracs")
def pracs(lms: jax.Array, pan: jax.Array, lrms: jax.Array, *, sensor: Sensor, ratio: int) -> jax.Array:
    """PRACS on one image.

    Args:
      lms: (H, W, C) upsampled MS (interp23tap), any scale.
      pan: (H, W, 1) PAN, same scale.
      lrms, sensor: unused (see the module docstring).
      ratio: PAN/MS scale ratio (for the bicubic low-pass of the PAN and intensities).

    Returns:
      (H, W, C) fused image, same scale and dtype as ``lms``.
    """
    del lrms, sensor
    h, w, c = lms.shape
    n = h * w
    ms = lms.reshape(n, c)
    p = pan.reshape(n, 1)

    # 1. Histogram matching of every MS band to the PAN.
    std_p, std_ms = _std(p), _std(ms)
    hm = jnp.maximum((ms - ms.mean(axis=0)) * (std_p / std_ms) + p.mean(axis=0), 0.0)

    # 2-3. Initial intensity: regression of the low-pass PAN on the matched bands.
    p_low = _low_pass(pan, ratio).reshape(n, 1)
    i_l = _fit_with_intercept(hm, p_low)  # (n, 1)

    # 4. Partial replacement.
    cc = _corr(i_l, hm)  # (C,)
    i_h = cc * p + (1.0 - cc) * hm  # (n, C)

    # 5. Band-dependent intensities.
    i_h_low = _low_pass(i_h.reshape(h, w, c), ratio).reshape(n, c)
    i_l_prime = _fit_with_intercept(hm, i_h_low)  # (n, C)

    # 6. Details with matched means.
    delta = i_h - i_l_prime - (i_h.mean(axis=0) - i_l_prime.mean(axis=0))

    # 7. Global weights.
    w_k = BETA * _corr(i_l_prime, ms) * std_ms / std_ms.mean()

    # 8. Local instability adjustment.
    l_i = 1.0 - jnp.abs(1.0 - _corr(i_l, ms) * ms / i_l_prime)

    # 9. Injection.
    fused = ms + w_k * l_i * delta
    return fused.reshape(h, w, c).astype(lms.dtype)

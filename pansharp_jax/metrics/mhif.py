"""MHIF quality indices (the "mhif" convention): PSNR, SAM, ERGAS, SSIM on [0, 1] data.

The multispectral/hyperspectral image fusion literature (HSRnet, Fusformer, MHF-Net,
FeINFN...) scores the fused HR-HSI against the ground truth on the [0, 1] scale (data
range 1, no border cut, no DN conversion, no Q2n):

* ``PSNR``: per band ``10 log10(1 / MSE_b)``, mean over bands, in dB;
* ``SAM``: per pixel ``arccos(<f, g> / (|f| |g|))`` in degrees, mean over pixels (pixels
  where ``|f| |g| = 0`` are left out; cosines clipped to [-1, 1]);
* ``ERGAS``: ``(100 / ratio) * sqrt(mean_b(MSE_b / mu_b^2))``, ``mu_b`` the GT band mean,
  ``ratio`` the spatial ratio HR/LR (4 or 8);
* ``SSIM``: Wang et al. (2004) per band with an 11 x 11 Gaussian window (sigma 1.5),
  'valid' positions (as ``ssim_index.m``), K = (0.01, 0.03), dynamic range 1, mean over
  pixels then over bands.

These are the array functions of :mod:`pansharp_jax.metrics.reduced` (same formulas,
reused), applied here without its toolbox border cut and DN scaling. Images are not
clipped: pass the product you would save.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.metrics.reduced import ergas, psnr, sam, ssim

MHIF_KEYS = ("PSNR", "SAM", "ERGAS", "SSIM")
CONVENTION = "mhif"


def evaluate_mhif(fused: Any, gt: Any, *, ratio: int) -> dict[str, Any]:
    """Score a fused HR-HSI against its ground truth with the MHIF convention.

    Args:
      fused: (H, W, B) or (..., H, W, B) fused image on [0, 1] (not clipped here).
      gt: the reference, same shape and scale.
      ratio: spatial ratio of the LR-HSI (ERGAS), a positive integer.

    Returns:
      ``{"PSNR" (dB), "SAM" (degrees), "ERGAS", "SSIM", "convention": "mhif"}``: Python
      floats for one image, float64 arrays of shape (...) for a batch. Computed in float64.
    """
    f, g = np.shape(fused), np.shape(gt)
    if len(f) < 3 or f != g:
        raise InputError(f"fused {f} and gt {g} must be (..., H, W, B) of the same shape")
    if min(f[-3], f[-2]) < 11:
        raise InputError(f"image {f[-3]}x{f[-2]} is smaller than the 11 x 11 SSIM window")
    if not isinstance(ratio, (int, np.integer)) or ratio < 1:
        raise InputError(f"ratio must be a positive integer, got {ratio!r}")
    with jax.enable_x64(True):
        a, b = jnp.asarray(fused, jnp.float64), jnp.asarray(gt, jnp.float64)
        vals = {"PSNR": psnr(b, a, 1.0), "SAM": sam(b, a), "ERGAS": ergas(b, a, int(ratio)), "SSIM": ssim(b, a, 1.0)}
        vals = jax.device_get(vals)
    out: dict[str, Any] = {}
    for k in MHIF_KEYS:
        v = np.asarray(vals[k], np.float64)
        out[k] = float(v) if v.ndim == 0 else v
    out["convention"] = CONVENTION
    return out

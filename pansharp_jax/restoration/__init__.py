"""Colour image restoration (floor 2): QWSNM / QWNNM in the quaternion domain.

Images are (H, W, 3) float32 on [0, 1]; noise levels ``sigma`` are on the 0..255 scale.

* :mod:`~pansharp_jax.restoration.quaternion`: quaternion matrices, complex adjoint, QSVD.
* :mod:`~pansharp_jax.restoration.qwsnm`: block matching, GST shrinkage, denoising and
  QADMM deblurring with continuation; kernels and circular blur.
* :mod:`~pansharp_jax.restoration.wnnm`: the per-channel WNNM / WSNM baselines.
* :mod:`~pansharp_jax.restoration.images`: PNG / TIFF / GeoTIFF true-colour reading and writing.
"""

from __future__ import annotations

from pansharp_jax.restoration.qwsnm import (
    DEFAULT_P,
    METHODS,
    Params,
    Result,
    blur,
    deblur,
    deblur_params,
    denoise,
    gaussian_kernel,
    gst,
    motion_kernel,
    params_for_sigma,
)

__all__ = [
    "DEFAULT_P",
    "METHODS",
    "Params",
    "Result",
    "blur",
    "deblur",
    "deblur_params",
    "denoise",
    "gaussian_kernel",
    "gst",
    "motion_kernel",
    "params_for_sigma",
]

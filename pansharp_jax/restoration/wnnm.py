"""Per-channel baselines: WNNM (p = 1) and WSNM (p < 1) on each colour channel separately.

The same code as QWSNM (:mod:`~pansharp_jax.restoration.qwsnm`) with one real channel at a
time: block matching on that channel, a real ``patch^2 x K`` matrix per group, the weighted
nuclear / Schatten p-norm step on its singular values (noise energy ``sigma^2`` per entry),
and aggregation. The three channels run as one ``jax.vmap``. Conventions: (H, W, 3) float32
on [0, 1]; ``sigma`` on the 0..255 scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pansharp_jax.restoration.qwsnm import Params, Result, deblur, denoise


def denoise_per_channel(
    image: Any, sigma: float, p: float = 1.0, params: Params | None = None, **kwargs: Any
) -> np.ndarray | Result:
    """WNNM (``p = 1``) or WSNM (``p < 1``) denoising of each channel: (H, W, 3) -> (H, W, 3) on [0, 1].

    ``sigma`` is on the 0..255 scale; ``kwargs`` as :func:`~pansharp_jax.restoration.denoise`.
    """
    method = "wnnm" if p >= 1.0 else "wsnm"
    return denoise(image, sigma, method=method, p=None if p >= 1.0 else p, params=params, **kwargs)


def deblur_per_channel(
    image: Any, kernel: Any, sigma: float, p: float = 1.0, params: Params | None = None, **kwargs: Any
) -> np.ndarray | Result:
    """Per-channel WNNM / WSNM deblurring by QADMM with continuation: (H, W, 3) -> (H, W, 3) on [0, 1].

    ``kernel`` (kh, kw) PSF (circular blur), ``sigma`` on the 0..255 scale; ``kwargs`` as
    :func:`~pansharp_jax.restoration.deblur`.
    """
    method = "wnnm" if p >= 1.0 else "wsnm"
    return deblur(image, kernel, sigma, method=method, p=None if p >= 1.0 else p, params=params, **kwargs)

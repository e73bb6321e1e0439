"""FSDS: Frequency Spectrum Distribution Similarity (Deng et al., ICML 2024), in dB.

Per image pair (prediction P, target T), exactly as the authors' definition:

1. standardise each image over all its elements: ``(x - mean) / std``;
2. if the height H is odd, append one row of zeros;
3. ``F = rfft2(x)`` over (H, W), per channel (unnormalised forward transform);
4. split the rows in halves: ``F1`` the first H/2 rows, ``F2`` the last H/2 rows flipped
   along the rows (both halves then start at a DC row of the periodic spectrum);
5. cumulative sums of ``F1`` and ``F2`` along the rows, then along the columns (the 2-D
   integral of the complex spectrum from the DC corner);
6. ``FSDS = -10 log10( sum(|F1P - F1T|^2 + |F2P - F2T|^2) / sum(|F1T|^2 + |F2T|^2) )``.

Higher is better. Notes on our conventions:

* Arrays are channels-last, (H, W, C) or (..., H, W, C), where the authors' code takes
  (C, H, W): the transform acts on (H, W) of each channel alike, and every step is a
  per-channel operation or a sum over all elements, so the value is the same.
* The standard deviation's ``ddof`` (the authors' torch ``std`` is unbiased) does not
  change the value: it scales P and T by the same factor, which cancels in the ratio.
* An image against itself (or against any ``a * P + b``, ``a > 0``, which standardises to
  the same array) has a zero error: FSDS is ``+inf``, the optimum, returned as is (no
  epsilon). A constant image has no standard deviation: the array functions give NaN,
  the public functions raise :class:`~pansharp_jax.errors.InputError`.
* The value does not depend on the data scale ([0, 1] or DN): images are standardised.

Public: :func:`fsds` (one HWC pair -> float, all bands together, the authors' number),
:func:`fsds_per_band` (each band as a one-channel image), :func:`fsds_scores` (the
``{"FSDS": mean over bands}`` entry of a reduced-resolution evaluation), and the jittable
batched :func:`fsds_array` / :func:`fsds_bands_array`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError

__all__ = ["fsds", "fsds_array", "fsds_bands_array", "fsds_per_band", "fsds_scores"]


def _integrated_halves(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Standardised, row-padded, rfft2'd and 2-D cumulated halves of (..., H, W, C)."""
    mean = jnp.mean(x, axis=(-3, -2, -1), keepdims=True)
    std = jnp.std(x, axis=(-3, -2, -1), keepdims=True)
    x = (x - mean) / std
    if x.shape[-3] % 2:
        pad = [(0, 0)] * x.ndim
        pad[-3] = (0, 1)
        x = jnp.pad(x, pad)
    f = jnp.fft.rfft2(x, axes=(-3, -2))  # (..., H, W // 2 + 1, C)
    half = x.shape[-3] // 2
    f1 = f[..., :half, :, :]
    f2 = jnp.flip(f[..., half:, :, :], axis=-3)
    integrate = lambda a: jnp.cumsum(jnp.cumsum(a, axis=-3), axis=-2)  # noqa: E731
    return integrate(f1), integrate(f2)


@jax.jit
def fsds_array(pred: jax.Array, target: jax.Array) -> jax.Array:
    """FSDS of each image pair, all channels together (the authors' definition).

    Args:
      pred: (..., H, W, C) prediction, any real scale (standardised inside).
      target: the reference, same shape.

    Returns:
      (...) FSDS in dB (higher is better; ``+inf`` for identical images, NaN when an
      image is constant). Jittable, differentiable, vmappable; float32 in, float32 out.
    """
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    p1, p2 = _integrated_halves(pred)
    t1, t2 = _integrated_halves(target)
    axes = (-3, -2, -1)
    err = jnp.sum(jnp.abs(p1 - t1) ** 2, axis=axes) + jnp.sum(jnp.abs(p2 - t2) ** 2, axis=axes)
    ref = jnp.sum(jnp.abs(t1) ** 2, axis=axes) + jnp.sum(jnp.abs(t2) ** 2, axis=axes)
    return -10.0 * jnp.log10(err / ref)


@jax.jit
def fsds_bands_array(pred: jax.Array, target: jax.Array) -> jax.Array:
    """FSDS of each band as a one-channel image (standardised per band).

    Args:
      pred, target: (..., H, W, C), same shape, any real scale.

    Returns:
      (..., C) FSDS in dB per band. Jittable.
    """
    move = lambda a: jnp.moveaxis(jnp.asarray(a), -1, -3)[..., None]  # (..., C, H, W, 1)  # noqa: E731
    return fsds_array(move(pred), move(target))


def _check_pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(target)
    if p.ndim == 2:
        p = p[..., None]
    if t.ndim == 2:
        t = t[..., None]
    if p.ndim != 3 or p.shape != t.shape:
        raise InputError(f"FSDS needs two images of the same shape (H, W[, C]); got {np.shape(pred)} and {np.shape(target)}")
    if p.shape[0] < 2 or p.shape[1] < 2:
        raise InputError(f"FSDS needs images of at least 2x2 pixels, got {p.shape[0]}x{p.shape[1]}")
    for what, a in (("prediction", p), ("target", t)):
        if a.dtype.kind not in "biuf":
            raise InputError(f"FSDS: the {what} has data type {a.dtype}, expected real numbers")
        if not np.isfinite(a).all():
            raise InputError(f"FSDS: the {what} contains NaN/Inf values")
    return p.astype(np.float64), t.astype(np.float64)


def _check_not_constant(a: np.ndarray, what: str, per_band: bool) -> None:
    spread = np.ptp(a.reshape(-1, a.shape[-1]), axis=0) if per_band else np.array([np.ptp(a)])
    if (spread == 0).any():
        where = f" (band {int(np.argmax(spread == 0))})" if per_band else ""
        raise InputError(f"FSDS is undefined for a constant image: the {what}{where} has no variation")


def fsds(pred: Any, target: Any) -> float:
    """FSDS of one image pair, all bands together (the authors' number for an RGB image).

    Args:
      pred: (H, W, C) or (H, W) prediction, e.g. a fused product on the [0, 1] scale.
      target: the reference (ground truth), same shape.

    Returns:
      FSDS in dB, a Python float; higher is better, ``inf`` when the two standardise to
      the same array. Computed in float64.

    Raises:
      InputError: shapes differ, not an image, NaN/Inf, or a constant image.
    """
    p, t = _check_pair(pred, target)
    _check_not_constant(p, "prediction", False)
    _check_not_constant(t, "target", False)
    with jax.enable_x64(True):
        return float(fsds_array(jnp.asarray(p), jnp.asarray(t)))


def fsds_per_band(pred: Any, target: Any) -> list[float]:
    """FSDS of each band (each standardised on its own), in dB, one float per band.

    Args:
      pred, target: (H, W, C) images of the same shape (e.g. fused product and GT on [0, 1]).

    Raises:
      InputError: as :func:`fsds`, or a constant band.
    """
    p, t = _check_pair(pred, target)
    _check_not_constant(p, "prediction", True)
    _check_not_constant(t, "target", True)
    with jax.enable_x64(True):
        return [float(v) for v in np.asarray(fsds_bands_array(jnp.asarray(p), jnp.asarray(t)))]


def fsds_scores(fused: Any, gt: Any, *, cut: int = 0) -> dict[str, float]:
    """The FSDS entry of a reduced-resolution evaluation: ``{"FSDS": mean over bands}``.

    The headline FSDS of a multispectral product is the mean, over bands, of the per-band
    FSDS in dB (:func:`fsds_per_band`); higher is better.

    Args:
      fused: (H, W, C) fused product on the [0, 1] scale (the scale does not matter).
      gt: (H, W, C) ground truth.
      cut: pixels removed from each border before the transform (0: the whole image, as
        the authors; the toolbox's other scores cut 21).

    Returns:
      ``{"FSDS": float}`` in dB (``inf`` only if every band is exact).
    """
    cut = int(cut)
    f, g = np.asarray(fused), np.asarray(gt)
    if cut < 0 or (cut and min(f.shape[:2]) <= 2 * cut + 1):
        raise InputError(f"FSDS border cut {cut} does not fit an image of {f.shape[:2]}")
    if cut:
        f, g = f[cut:-cut, cut:-cut], g[cut:-cut, cut:-cut]
    return {"FSDS": float(np.mean(fsds_per_band(f, g)))}

"""Reduced-resolution metrics (with a ground truth), equal to the MATLAB toolbox.

``indexes_evaluation`` of the toolbox scores a fused image F against the ground truth
GT, both in DN, after cutting a border. This module reproduces every index it returns
and adds PSNR and SSIM:

* ``Q2n``: hypercomplex quality (Q4/Q8) on 32 x 32 blocks, shift 32, after mirror
  padding to a multiple of 32 and a uint16 cast (round, saturate): ``q2n``.
* ``Q_avg``: mean over bands of UIQI on every 32 x 32 window (stride 1): ``Q``/``img_qi``.
* ``SAM``: mean spectral angle in degrees over pixels whose norm product is not zero.
* ``ERGAS``: ``(100 / ratio) * sqrt(mean_b(MSE_b / mean(GT_b)^2))``.
* ``SCC``: correlation (no mean removal) of the Sobel gradient magnitudes of F and GT,
  each band filtered without its 1-pixel frame, zero padding (this toolbox's ``SCC``).
* ``PSNR`` (not in the toolbox): on the [0, 1] scale (DN / max_dn), per band
  ``10 log10(1 / MSE_b)``, averaged over bands, in dB.
* ``SSIM`` (not in the toolbox's evaluation: its ``ssim.m`` is unused): the standard
  Wang et al. (2004) index on [0, 1] data, 11 x 11 Gaussian window (sigma 1.5,
  'valid' positions), K = (0.01, 0.03), dynamic range 1, no automatic downsampling,
  mean over pixels then over bands.

All metrics are computed on the same cut images. Border cut ``cut = d`` is MATLAB's
``I(d:end-d, d:end-d, :)``, i.e. 0-based rows/cols ``[d-1, H-d)`` (256 -> 215 for
d = 21); ``cut = 0`` keeps the whole image.

Array functions take (..., H, W, C) arrays (channels last, optional leading batch
dims) and return one value per image, shape (...). They are pure and jittable
(Python-level options static). For toolbox-exact values call them with float64 DN
arrays under ``jax.enable_x64(True)``; :func:`evaluate_reduced` does that for you.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.metrics._quality import filter_valid, q2n, uiqi_sliding

REDUCED_KEYS = ("Q2n", "Q_avg", "SAM", "ERGAS", "SCC", "PSNR", "SSIM")


def cut_border(x: jax.Array, cut: int) -> jax.Array:
    """MATLAB ``x(cut:end-cut, cut:end-cut, :)`` on (..., H, W, C); ``cut = 0``: unchanged."""
    if cut <= 0:
        return x
    h, w = x.shape[-3], x.shape[-2]
    return x[..., cut - 1 : h - cut, cut - 1 : w - cut, :]


@functools.partial(jax.jit, static_argnames=("block",))
def q_avg(gt: jax.Array, fused: jax.Array, block: int = 32) -> jax.Array:
    """Mean over bands and windows of UIQI on sliding ``block`` x ``block`` windows.

    gt, fused: (..., H, W, C), any unit (DN in the toolbox) -> (...).
    """
    return jnp.mean(uiqi_sliding(gt, fused, block), axis=(-3, -2, -1))


@functools.partial(jax.jit, static_argnames=("block", "shift"))
def q2n_index(gt: jax.Array, fused: jax.Array, block: int = 32, shift: int = 32) -> jax.Array:
    """Q2n (Q4/Q8) of ``fused`` against ``gt``, both (..., H, W, C) in DN -> (...)."""
    return q2n(gt, fused, block, shift)


@jax.jit
def sam(gt: jax.Array, fused: jax.Array) -> jax.Array:
    """Spectral Angle Mapper in degrees, (..., H, W, C) -> (...).

    Mean angle over pixels where ``|gt| |fused| != 0``; cosines outside [-1, 1] from
    rounding are clipped (MATLAB keeps the real part of ``acos``, the same thing).
    """
    dot = jnp.sum(gt * fused, axis=-1)
    norm = jnp.sqrt(jnp.sum(gt * gt, axis=-1) * jnp.sum(fused * fused, axis=-1))
    valid = norm != 0.0
    cosine = jnp.clip(dot / jnp.where(valid, norm, 1.0), -1.0, 1.0)
    angle = jnp.where(valid, jnp.arccos(cosine), 0.0)
    return jnp.sum(angle, axis=(-2, -1)) / jnp.sum(valid, axis=(-2, -1)) * (180.0 / np.pi)


@functools.partial(jax.jit, static_argnames=("ratio",))
def ergas(gt: jax.Array, fused: jax.Array, ratio: int = 4) -> jax.Array:
    """ERGAS, ``(100/ratio) sqrt(mean_b MSE_b / mean(gt_b)^2)``; (..., H, W, C) -> (...)."""
    mse = jnp.mean((gt - fused) ** 2, axis=(-3, -2))
    mean = jnp.mean(gt, axis=(-3, -2))
    return (100.0 / ratio) * jnp.sqrt(jnp.mean(mse / mean**2, axis=-1))


def _sobel_magnitude(x: jax.Array) -> jax.Array:
    """|Sobel gradient| of (..., H, W, C) minus its 1-pixel frame, zero padded ('same')."""
    x = x[..., 1:-1, 1:-1, :]
    pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
    p = jnp.pad(x, pad)
    h, w = x.shape[-3], x.shape[-2]

    def at(dy: int, dx: int) -> jax.Array:
        return p[..., dy : dy + h, dx : dx + w, :]

    # correlation with [1 2 1; 0 0 0; -1 -2 -1] and with its transpose
    gy = (at(0, 0) + 2.0 * at(0, 1) + at(0, 2)) - (at(2, 0) + 2.0 * at(2, 1) + at(2, 2))
    gx = (at(0, 0) + 2.0 * at(1, 0) + at(2, 0)) - (at(0, 2) + 2.0 * at(1, 2) + at(2, 2))
    return jnp.sqrt(gy * gy + gx * gx)


@jax.jit
def scc(gt: jax.Array, fused: jax.Array) -> jax.Array:
    """Spatial correlation coefficient of Sobel gradient magnitudes (toolbox ``SCC``).

    ``sum(Gf * Gg) / sqrt(sum Gf^2) / sqrt(sum Gg^2)`` over pixels and bands, no mean
    removal. (..., H, W, C) -> (...).
    """
    gf, gg = _sobel_magnitude(fused), _sobel_magnitude(gt)
    axes = (-3, -2, -1)
    return jnp.sum(gf * gg, axis=axes) / jnp.sqrt(jnp.sum(gf * gf, axis=axes)) / jnp.sqrt(jnp.sum(gg * gg, axis=axes))


@functools.partial(jax.jit, static_argnames=("data_range",))
def psnr(gt: jax.Array, fused: jax.Array, data_range: float = 1.0) -> jax.Array:
    """Mean over bands of ``10 log10(data_range^2 / MSE_b)`` in dB; (..., H, W, C) -> (...).

    ``data_range = 1`` for [0, 1] data; pass ``max_dn`` for DN data (same value).
    """
    mse = jnp.mean((gt - fused) ** 2, axis=(-3, -2))
    return jnp.mean(10.0 * jnp.log10(data_range**2 / mse), axis=-1)


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


@functools.partial(jax.jit, static_argnames=("data_range",))
def ssim(gt: jax.Array, fused: jax.Array, data_range: float = 1.0) -> jax.Array:
    """SSIM (Wang et al. 2004), Gaussian 11 x 11 window, sigma 1.5, 'valid' positions.

    Mean over pixels, then over bands; K1 = 0.01, K2 = 0.03, no downsampling.
    (..., H, W, C) -> (...); ``data_range`` is 1 for [0, 1] data.
    """
    taps = _gaussian_taps()
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    x, y = jnp.moveaxis(gt, -1, -3), jnp.moveaxis(fused, -1, -3)  # (..., C, H, W)
    maps = jnp.stack([x, y, x * x, y * y, x * y])
    mu1, mu2, e11, e22, e12 = filter_valid(filter_valid(maps, taps, -2), taps, -1)
    s11 = e11 - mu1 * mu1
    s22 = e22 - mu2 * mu2
    s12 = e12 - mu1 * mu2
    num = (2.0 * mu1 * mu2 + c1) * (2.0 * s12 + c2)
    den = (mu1 * mu1 + mu2 * mu2 + c1) * (s11 + s22 + c2)
    return jnp.mean(num / den, axis=(-3, -2, -1))


@functools.partial(jax.jit, static_argnames=("scale", "cut"))
def _prepare(fused: jax.Array, gt: jax.Array, scale: float, cut: int) -> tuple[jax.Array, ...]:
    """Cut the border; return (fused, gt) in DN and on [0, 1] (inputs are times ``scale``)."""
    f, g = cut_border(fused, cut), cut_border(gt, cut)
    if scale == 1.0:
        return f, g, f, g
    return f * scale, g * scale, f, g


@functools.partial(jax.jit, static_argnames=("ratio",))
def _light(f: jax.Array, g: jax.Array, f01: jax.Array, g01: jax.Array, ratio: int) -> dict[str, jax.Array]:
    return {"SAM": sam(g, f), "ERGAS": ergas(g, f, ratio), "SCC": scc(g, f), "PSNR": psnr(g01, f01, 1.0)}


def _score(f: jax.Array, g: jax.Array, f01: jax.Array, g01: jax.Array, ratio: int, block: int) -> dict[str, jax.Array]:
    # The heavy metrics are compiled one by one: on CPU, XLA runs one program holding
    # several independent heavy stages two to three times slower than the stages in
    # sequence.
    out = {"Q2n": q2n_index(g, f, block, block), "Q_avg": q_avg(g, f, block)}
    out.update(_light(f, g, f01, g01, ratio))
    out["SSIM"] = ssim(g01, f01, 1.0)
    return {k: out[k] for k in REDUCED_KEYS}


def reduced_metrics_dn(
    fused_dn: jax.Array, gt_dn: jax.Array, ratio: int = 4, max_dn: float = 2047.0, block: int = 32, cut: int = 21
) -> dict[str, jax.Array]:
    """All reduced-resolution metrics from DN images, as arrays of shape (...).

    Args:
      fused_dn, gt_dn: (..., H, W, C) in DN (float64 for toolbox-exact values).
      ratio: PAN/MS ratio (ERGAS). max_dn: DN of value 1 (PSNR/SSIM on [0, 1]).
      block: Q2n / Q_avg block side. cut: border cut (0 = none).
    """
    f, g, _, _ = _prepare(fused_dn, gt_dn, 1.0, int(cut))
    return _score(f, g, f / max_dn, g / max_dn, int(ratio), int(block))


def _to_python(values: dict[str, jax.Array]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in jax.device_get(values).items():
        a = np.asarray(v, dtype=np.float64)
        out[k] = float(a) if a.ndim == 0 else a
    return out


def _check_reduced_inputs(fused: Any, gt: Any, max_dn: float, block: int, cut: int) -> None:
    f, r = np.shape(fused), np.shape(gt)
    if len(f) < 3:
        raise InputError(f"fused must be (..., H, W, C), got shape {f}")
    if f != r:
        raise InputError(f"fused {f} and gt {r} must have the same shape")
    if cut < 0:
        raise InputError(f"the border cut must be >= 0, got {cut}")
    h, w = (f[-3] - 2 * cut + 1, f[-2] - 2 * cut + 1) if cut else f[-3:-1]
    if min(h, w) < max(block, 11):
        raise InputError(f"image {f[-3]}x{f[-2]} is too small for a border cut of {cut} and {block}x{block} blocks")
    if not max_dn > 0:
        raise InputError(f"max_dn must be positive, got {max_dn}")


def evaluate_reduced(
    fused: Any, gt: Any, *, ratio: int = 4, max_dn: float = 2047.0, block: int = 32, cut: int = 21
) -> dict[str, Any]:
    """Score a fused image against its ground truth, as the toolbox's ``indexes_evaluation``.

    Args:
      fused: (H, W, C) or (..., H, W, C) fused image on the [0, 1] scale (not clipped).
      gt: ground truth, same shape and scale.
      ratio: PAN/MS resolution ratio (for ERGAS).
      max_dn: DN of value 1.0 (2047 for 11-bit data, 1023 for 10-bit); the toolbox
        metrics are computed on ``x * max_dn``.
      block: Q2n / Q_avg block size (32 in the toolbox).
      cut: border cut ``dim_cut`` (21 in the toolbox); 0 for the ``nocut`` numbers.

    Returns:
      ``{"Q2n", "Q_avg", "SAM" (degrees), "ERGAS", "SCC", "PSNR" (dB), "SSIM"}``: Python
      floats for one image; float64 NumPy arrays of shape (...) for a batch.
      Computed in float64 (``jax.enable_x64``), whatever the input dtype.
    """
    _check_reduced_inputs(fused, gt, max_dn, int(block), int(cut))
    with jax.enable_x64(True):
        f, g = jnp.asarray(fused, jnp.float64), jnp.asarray(gt, jnp.float64)
        f, g, f01, g01 = _prepare(f, g, float(max_dn), int(cut))
        return _to_python(_score(f, g, f01, g01, int(ratio), int(block)))

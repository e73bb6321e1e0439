"""Classical MHIF baselines: LR-HSI (h, w, B) + HR-MSI guide (H, W, K) -> HR-HSI (H, W, B).

Every method is ``fuse(params=None, lrms, pan, *, rng=None, ratio=4, ...)`` like the
pan-sharpening baselines, with ``pan`` the K-band HR-MSI. Inputs (..., h, w, B) and
(..., H, W, K) on [0, 1] (or any common scale), H = ratio * h; leading dims are a batch.
Deterministic, pure JAX and jitted (``ratio``, the degradation and the iteration counts
static); :func:`estimate_srf` (SciPy NNLS) is the only NumPy step, used by :func:`cnmf`
when no SRF is given.

* :func:`bicubic`: MATLAB ``imresize(lrms, ratio)`` (bicubic), the field's ``HSI_up``.
* :func:`glp_hs`: GLP hyper-sharpening (after Selva et al. 2015, "GLP-HS" in the MHIF
  comparisons). For each HS band b a synthetic intensity ``I_b = sum_k w_bk M_k`` is made
  from the MSI bands; the weights come from least squares (with intercept) of the LR-HSI
  band on the MSI *degraded like the LR-HSI* (``synth="regress"``), or from the single
  MSI band best correlated with it at low resolution, with its regression gain
  (``synth="select"``). The detail is injected additively:
  ``F_b = up(LR_b) + I_b - up(D(I_b))`` with ``D`` the LR-HSI's own blur + decimation (the
  MTF-matched low-pass of MTF-GLP; here the known or assumed degradation, default the
  simulation's ``"zsl"`` Gaussian) and ``up`` = :func:`bicubic`. Gains are 1 because the
  regression already maps MSI units to band b. If the HR-HSI is a linear combination of
  the MSI bands, the result is exact whatever ``up`` is.
* :func:`cnmf`: coupled non-negative matrix factorisation (after Yokoya et al. 2012):
  HR-HSI = A E with abundances A (H W x p) and endmembers E (p x B), by default
  p = min(20, B, h w).
  HS unmixing first: E from the successive projection algorithm (SPA) on the LR-HSI, then
  the LR abundances A_h (E fixed), then both. Then ``outer`` rounds of an MS step
  (``E_m = E @ SRF``; update A with E_m fixed, then both; the first A is the bicubic-
  upsampled A_h) and an HS step (``A_h = D(A)``; update E with A_h fixed, then both).
  Every sub-step is ``inner`` Lee-Seung multiplicative updates (Euclidean loss). Output
  A E (non-negative). Yokoya's sum-to-one augmentation and convergence tests are left
  out (fixed counts: 2 + 3 x 4 sub-steps of 100 updates by default).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.data.hsi import Degradation, blur_decimate, get_degradation
from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.errors import InputError

_TINY = 1e-12


def _check(lrms: Any, pan: Any, ratio: int, method: str) -> tuple[jax.Array, jax.Array]:
    if not isinstance(ratio, (int, np.integer)) or ratio < 1:
        raise InputError(f"{method}: ratio must be a positive integer, got {ratio!r}")
    lr, ms = jnp.asarray(lrms), jnp.asarray(pan)
    if lr.ndim < 3 or ms.ndim != lr.ndim:
        raise InputError(f"{method}: lrms (..., h, w, B) and pan (..., H, W, K) needed, got {lr.shape} and {ms.shape}")
    if lr.shape[:-3] != ms.shape[:-3] or ms.shape[-3:-1] != (ratio * lr.shape[-3], ratio * lr.shape[-2]):
        raise InputError(f"{method}: pan {ms.shape} is not ratio {ratio} x lrms {lr.shape} (same batch dims)")
    dtype = jnp.result_type(lr.dtype, ms.dtype, jnp.float32)
    return lr.astype(dtype), ms.astype(dtype)


def _batched(core: Any, lr: jax.Array, ms: jax.Array, *args: Any) -> jax.Array:
    lead = lr.shape[:-3]
    out = jax.vmap(lambda a, b: core(a, b, *args))(lr.reshape((-1, *lr.shape[-3:])), ms.reshape((-1, *ms.shape[-3:])))
    return out.reshape((*lead, *out.shape[-3:]))


def _no_params(params: Any, method: str) -> None:
    if params is not None:
        raise InputError(f"{method} is a classical method and takes params=None")


def bicubic(params: Any, lrms: Any, pan: Any, *, rng: Any = None, ratio: int = 4) -> jax.Array:
    """MATLAB-bicubic upsampling of the LR-HSI (the guide is only checked): (..., H, W, B)."""
    _no_params(params, "bicubic")
    lr, _ = _check(lrms, pan, ratio, "bicubic")
    return imresize_bicubic(lr, int(ratio))


# ----------------------------------------------------------------------------- GLP-HS


@functools.partial(jax.jit, static_argnames=("ratio", "degradation", "synth"))
def _glp_core(lr: jax.Array, ms: jax.Array, ratio: int, degradation: Degradation, synth: str) -> jax.Array:
    k, b = ms.shape[-1], lr.shape[-1]
    ms_lr = blur_decimate(ms, ratio, degradation)
    detail = ms - imresize_bicubic(ms_lr, ratio)  # I - up(D(I)) for each MSI band (linear in I)
    x = ms_lr.reshape(-1, k)
    y = lr.reshape(-1, b)
    xc, yc = x - x.mean(0), y - y.mean(0)  # the intercept drops out of the detail
    if synth == "regress":
        weights = jnp.linalg.lstsq(xc, yc)[0]  # (K, B)
    else:
        cov = xc.T @ yc  # (K, B)
        var = jnp.sum(xc * xc, axis=0)[:, None]
        corr = cov / jnp.sqrt(jnp.maximum(var * jnp.sum(yc * yc, axis=0)[None, :], _TINY))
        pick = jax.nn.one_hot(jnp.argmax(jnp.abs(corr), axis=0), k, axis=0, dtype=lr.dtype)
        weights = pick * cov / jnp.maximum(var, _TINY)
    up = imresize_bicubic(lr, ratio)
    return up + jnp.einsum("hwk,kb->hwb", detail, weights, precision=jax.lax.Precision.HIGHEST)


def glp_hs(
    params: Any,
    lrms: Any,
    pan: Any,
    *,
    rng: Any = None,
    ratio: int = 4,
    degradation: str | Degradation = "zsl",
    synth: str = "regress",
) -> jax.Array:
    """GLP hyper-sharpening (see the module docstring).

    Args:
      params: None. lrms: (..., h, w, B) LR-HSI. pan: (..., H, W, K) HR-MSI. rng: ignored.
      ratio: H / h. degradation: the LR-HSI's blur + decimation (preset or :class:`Degradation`).
      synth: ``"regress"`` (all MSI bands) or ``"select"`` (the best-correlated band).

    Returns:
      (..., H, W, B), the scale and float dtype of the inputs; not clipped.
    """
    _no_params(params, "glp_hs")
    if synth not in ("regress", "select"):
        raise InputError(f"glp_hs: synth must be 'regress' or 'select', got {synth!r}")
    lr, ms = _check(lrms, pan, ratio, "glp_hs")
    return _batched(_glp_core, lr, ms, int(ratio), get_degradation(degradation), synth)


# ----------------------------------------------------------------------------- CNMF


def spa(y: jax.Array, p: int) -> jax.Array:
    """Successive projection algorithm: indices (p,) of p near-pure rows of y (n, L), int32."""
    res = y
    picked = []
    for _ in range(p):
        j = jnp.argmax(jnp.sum(res * res, axis=1))
        u = res[j] / jnp.maximum(jnp.linalg.norm(res[j]), _TINY)
        res = res - jnp.outer(res @ u, u)
        picked.append(j)
    return jnp.stack(picked).astype(jnp.int32)


def _update_a(y: jax.Array, a: jax.Array, e: jax.Array) -> jax.Array:
    return a * (y @ e.T) / (a @ (e @ e.T) + _TINY)


def _update_e(y: jax.Array, a: jax.Array, e: jax.Array) -> jax.Array:
    return e * (a.T @ y) / ((a.T @ a) @ e + _TINY)


def _mu(y: jax.Array, a: jax.Array, e: jax.Array, steps: int, which: str) -> tuple[jax.Array, jax.Array]:
    """``steps`` multiplicative updates of A (``"a"``), E (``"e"``) or both in turn (``"both"``)."""

    def body(_: int, ae: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        a, e = ae
        if which in ("a", "both"):
            a = _update_a(y, a, e)
        if which in ("e", "both"):
            e = _update_e(y, a, e)
        return a, e

    return jax.lax.fori_loop(0, steps, body, (a, e))


@functools.partial(jax.jit, static_argnames=("ratio", "degradation", "p", "outer", "inner"))
def _cnmf_core(
    lr: jax.Array, ms: jax.Array, srf: jax.Array, ratio: int, degradation: Degradation, p: int, outer: int, inner: int
) -> jax.Array:
    h, w, b = lr.shape
    hh, ww, k = ms.shape
    yh, ym = lr.reshape(-1, b), ms.reshape(-1, k)
    e = yh[spa(yh, p)]  # (p, B)
    ah = jnp.full((h * w, p), 1.0 / p, lr.dtype)
    ah, e = _mu(yh, ah, e, inner, "a")
    ah, e = _mu(yh, ah, e, inner, "both")
    a = jnp.maximum(imresize_bicubic(ah.reshape(h, w, p), ratio), 0.0).reshape(-1, p) + 1e-6
    for _ in range(outer):
        em = e @ srf  # MS step: the coupled MSI endmembers
        a, em = _mu(ym, a, em, inner, "a")
        a, em = _mu(ym, a, em, inner, "both")
        ah = blur_decimate(a.reshape(hh, ww, p), ratio, degradation).reshape(-1, p)  # HS step
        ah, e = _mu(yh, ah, e, inner, "e")
        ah, e = _mu(yh, ah, e, inner, "both")
    return (a @ e).reshape(hh, ww, b)


def estimate_srf(lrms: Any, pan: Any, *, ratio: int, degradation: str | Degradation = "zsl") -> np.ndarray:
    """Non-negative least-squares SRF (B, K) with ``D(MSI) ~= LR-HSI @ SRF`` at low resolution.

    lrms (h, w, B), pan (H, W, K) single images; SciPy NNLS per MSI band, float64.
    """
    from scipy.optimize import nnls

    lr, ms = _check(lrms, pan, ratio, "estimate_srf")
    ms_lr = np.asarray(blur_decimate(ms, int(ratio), get_degradation(degradation)), np.float64)
    x = np.asarray(lr, np.float64).reshape(-1, lr.shape[-1])
    return np.stack([nnls(x, ms_lr[..., j].ravel())[0] for j in range(ms_lr.shape[-1])], axis=1)


def cnmf(
    params: Any,
    lrms: Any,
    pan: Any,
    *,
    rng: Any = None,
    ratio: int = 4,
    srf: Any = None,
    degradation: str | Degradation = "zsl",
    endmembers: int | None = None,
    outer: int = 3,
    inner: int = 100,
) -> jax.Array:
    """Coupled NMF fusion (see the module docstring).

    Args:
      params: None. lrms: (..., h, w, B) LR-HSI >= 0. pan: (..., H, W, K) HR-MSI >= 0.
      rng: ignored. ratio: H / h. srf: (B, K) with MSI = HSI @ SRF (default: estimated per
        image by :func:`estimate_srf`; then not jittable). degradation: the LR-HSI's blur +
        decimation. endmembers: p (default ``min(20, B, h w)``). outer, inner: rounds and
        multiplicative updates per sub-step.

    Returns:
      (..., H, W, B) non-negative, the scale and float dtype of the inputs.
    """
    _no_params(params, "cnmf")
    lr, ms = _check(lrms, pan, ratio, "cnmf")
    b, k = lr.shape[-1], ms.shape[-1]
    p = min(20, b, lr.shape[-3] * lr.shape[-2]) if endmembers is None else int(endmembers)
    if not 1 <= p <= min(b, lr.shape[-3] * lr.shape[-2]):
        raise InputError(f"cnmf: endmembers must be in [1, {min(b, lr.shape[-3] * lr.shape[-2])}], got {endmembers}")
    d = get_degradation(degradation)
    if srf is None:
        if lr.ndim != 3:
            raise InputError("cnmf: pass srf= for batched inputs (it is estimated per single image)")
        srf = estimate_srf(lr, ms, ratio=int(ratio), degradation=d)
    s = jnp.asarray(srf, lr.dtype)
    if s.shape != (b, k):
        raise InputError(f"cnmf: srf must be ({b}, {k}), got {tuple(s.shape)}")
    return _batched(_cnmf_core, lr, ms, s, int(ratio), d, p, int(outer), int(inner))

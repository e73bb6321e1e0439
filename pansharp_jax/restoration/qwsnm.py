"""QWSNM / QWNNM: quaternion weighted Schatten p-norm minimisation on non-local patch groups.

Colour image denoising and deblurring (Zhang et al., "Quaternion weighted Schatten p-norm
minimization for color image restoration with convergence guarantee", Signal Processing
2024). Conventions everywhere in this module: images are (H, W, 3) float32 in [0, 1];
the noise level ``sigma`` is given on the 0..255 scale, as the field does, and used as
``sigma / 255`` internally.

Per patch group (``K`` most similar ``patch x patch`` patches, found by block matching in a
``(2 window + 1)^2`` search window around each reference patch) the mean patch is removed
and the remaining ``patch^2 x K`` quaternion matrix Y (pixel = pure quaternion ``R i + G j +
B k``) is shrunk on its quaternion singular values (complex adjoint SVD,
:mod:`~pansharp_jax.restoration.quaternion`):

    min_X 0.5 ||Y - X||_F^2 + sum_i w_i s_i(X)^p,   w_i = c sqrt(K) s_n^2 / (s_i(X)_est + eps),
    s_i(X)_est = sqrt(max(s_i(Y)^2 - K s_n^2, 0)),  s_n^2 = n_c sigma_g^2

solved per singular value by generalised soft thresholding (:func:`gst`, Zuo et al. 2013).
``n_c`` is the number of noisy components per pixel (3 for quaternions, 1 for the per-channel
real baselines), so ``s_n^2`` is the noise energy per matrix entry. p = 1 is QWNNM;
the real (per-channel) versions are WNNM / WSNM (:mod:`~pansharp_jax.restoration.wnnm`).

Denoising follows the WNNM scheme: ``iters`` outer iterations of iterative regularisation
``y_k = x_k + delta (y - x_k)``, per-group noise re-estimation ``sigma_g = lam sqrt(|sigma^2 -
mean_group (y - x_k)^2|)`` (``sigma`` on the first iteration), group shrinkage and
aggregation (average of all overlapping patch estimates). Block matching runs on ``y_k``
every ``bm_every`` iterations; the iterations between two matchings are one ``lax.scan``.

Deblurring (``y = k * x + n``, circular convolution) uses QADMM with continuation:

    u_{k+1} = F^-1[(conj(K) Y + a_k F(g_k - d_k)) / (|K|^2 + a_k)]      (data step, Fourier)
    g_{k+1} = group shrinkage of u_{k+1} + d_k at sigma_k = theta sigma sqrt(a_0 / a_k)
    d_{k+1} = d_k + u_{k+1} - g_{k+1},   a_{k+1} = mu a_k   (mu > 1: continuation)

``a = beta / lambda`` is the penalty relative to the data weight; growing it (the paper's
``beta_{k+1} = mu beta_k``) makes the shrinkage vanish so the iterates converge
(``||x_{k+1} - x_k|| -> 0``). Block matching runs on the first ``u`` and again every
``bm_every`` iterations.

Choices where the reference (MATLAB p-code) is not readable, all fields of :class:`Params`:
p = 0.9 for QWSNM (``DEFAULT_P``); ``eps = 1e-6`` (in [0, 1] units); 20 GST fixed-point
iterations; a fixed number of patches per group (WNNM lowers it by 10 at each rematching;
static shapes here); noise energy per quaternion entry ``3 sigma^2``; groups re-estimate
noise from the mean over the group; the mean patch is removed before the SVD; the output
is clipped to [0, 1]; deblurring ``alpha0 = 0.05``, ``mu = 1.2``, ``theta = 5`` (picked from a
6-point grid on one 64 x 64 image with the per-channel baseline). No ground-truth (oracle)
early stopping.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.restoration import quaternion as qt

DEFAULT_P = 0.9
METHODS = ("qwsnm", "qwnnm", "wnnm", "wsnm")


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the group low-rank solver (hashable: used as a static jit argument).

    Attributes:
      patch: patch side in pixels.
      patches: patches per group ``K`` (including the reference patch).
      iters: outer iterations (denoising) or QADMM iterations (deblurring).
      lam: noise re-estimation factor (ParSet ``lamada``).
      delta: iterative regularisation step.
      window: search radius in pixels (window side ``2 window + 1``).
      step: reference-patch grid step in pixels (None: ``max(1, floor(patch / 2 - 1))``).
      bm_every: iterations between two block matchings (ParSet inner loop).
      c: weight constant ``c`` (ParSet ``Constant``).
      eps: weight regulariser, [0, 1] intensity units.
      gst_iters: fixed-point iterations of :func:`gst`.
      alpha0: deblurring: initial penalty ``beta / lambda``.
      mu: deblurring: continuation factor (> 1; 1 keeps beta fixed, without the convergence guarantee).
      theta: deblurring: the shrinkage's noise level at iteration 0, in units of ``sigma``.
    """

    patch: int = 5
    patches: int = 90
    iters: int = 20
    lam: float = 0.56
    delta: float = 0.1
    window: int = 30
    step: int | None = None
    bm_every: int = 2
    c: float = 2.0 * math.sqrt(2.0)
    eps: float = 1e-6
    gst_iters: int = 20
    alpha0: float = 0.05
    mu: float = 1.2
    theta: float = 5.0

    @property
    def grid_step(self) -> int:
        return self.step if self.step is not None else max(1, self.patch // 2 - 1)


def params_for_sigma(sigma: float, **overrides: Any) -> Params:
    """The reference ParSet for a noise level ``sigma`` (0..255 scale), plus ``overrides``.

    sigma <= 20: patch 4, 55 patches, 12 iterations, lam 0.52; <= 40: 5/90/20/0.56;
    <= 65: 5/120/9/0.58; else 5/140/14/0.58. Search radius 30, inner loop 2.
    """
    if sigma <= 20:
        base = Params(patch=4, patches=55, iters=12, lam=0.52)
    elif sigma <= 40:
        base = Params(patch=5, patches=90, iters=20, lam=0.56)
    elif sigma <= 65:
        base = Params(patch=5, patches=120, iters=9, lam=0.58)
    else:
        base = Params(patch=5, patches=140, iters=14, lam=0.58)
    return dataclasses.replace(base, **overrides)


def deblur_params(**overrides: Any) -> Params:
    """Deblurring defaults (demo: patch 6, 155 patches, c = 1.3 sqrt 2), plus ``overrides``."""
    base = Params(patch=6, patches=155, iters=20, c=1.3 * math.sqrt(2.0), bm_every=5)
    return dataclasses.replace(base, **overrides)


# ----------------------------------------------------------------------------- shrinkage


def gst(y: jax.Array, w: jax.Array, p: float, iters: int = 20) -> jax.Array:
    """Generalised soft thresholding: ``argmin_x 0.5 (x - y)^2 + w |x|^p`` elementwise.

    Args:
      y: values (any shape, any units); w: weights >= 0 (broadcast with y); p in (0, 1]
        (static); iters: fixed-point iterations ``x <- |y| - w p x^(p-1)``.

    Returns:
      The minimiser, same shape as ``y``: 0 where ``|y| <= tau = (2w(1-p))^(1/(2-p)) +
      w p (2w(1-p))^((p-1)/(2-p))``, else the fixed point with the sign of ``y``. p = 1 is
      soft thresholding at ``w``.
    """
    ay = jnp.abs(y)
    if p >= 1.0:
        return jnp.sign(y) * jnp.maximum(ay - w, 0.0)
    w = jnp.broadcast_to(w, ay.shape)
    ws = jnp.maximum(w, 1e-30)
    t = 2.0 * ws * (1.0 - p)
    tau = jnp.where(w > 0, t ** (1.0 / (2.0 - p)) + ws * p * t ** ((p - 1.0) / (2.0 - p)), 0.0)

    def step(x: jax.Array, _: Any) -> tuple[jax.Array, None]:
        return jnp.maximum(ay - w * p * jnp.maximum(x, 1e-30) ** (p - 1.0), 1e-30), None

    x, _ = jax.lax.scan(step, ay, None, length=iters)
    return jnp.where(ay > tau, jnp.sign(y) * x, 0.0)


def weights(s: jax.Array, k: int, noise_var: jax.Array, c: float, eps: float) -> jax.Array:
    """WNNM/WSNM weights ``c sqrt(k) v / (sqrt(max(s^2 - k v, 0)) + eps)``: s (..., r), v (...) -> (..., r).

    ``noise_var`` is the noise energy per matrix entry (same units as ``s^2``).
    """
    v = noise_var[..., None]
    est = jnp.sqrt(jnp.maximum(s * s - k * v, 0.0))
    return c * math.sqrt(k) * v / (est + eps)


def shrink_groups(groups: jax.Array, noise_sd: jax.Array, p: float, params: Params) -> jax.Array:
    """Low-rank estimate of patch groups (mean patch removed, singular values shrunk by GST).

    Args:
      groups: (G, K, m, C) patch groups, m = patch^2 pixels; C = 3 is treated as a
        quaternion matrix (m x K), C = 1 as a real one.
      noise_sd: (G,) noise standard deviation per group, [0, 1] units.
      p: Schatten exponent in (0, 1]; params: :class:`Params` (c, eps, gst_iters).

    Returns:
      (G, K, m, C) estimated groups.
    """
    _, k, _, ch = groups.shape
    mean = jnp.mean(groups, axis=1, keepdims=True)
    y = jnp.swapaxes(groups - mean, 1, 2)  # (G, m, K, C)
    var = ch * noise_sd**2

    def fn(s: jax.Array) -> jax.Array:
        return gst(s, weights(s, k, var, params.c, params.eps), p, params.gst_iters)

    if ch == 3:
        x = qt.to_rgb(qt.shrink_singular_values(qt.from_rgb(y), fn))
    elif ch == 1:
        u, s, vh = jnp.linalg.svd(y[..., 0], full_matrices=False)
        x = ((u * fn(s)[..., None, :]) @ vh)[..., None]
    else:
        raise ValueError(f"groups must have 1 or 3 channels, got {ch}")
    return jnp.swapaxes(x, 1, 2) + mean


# ----------------------------------------------------------------------------- patches


def reference_grid(n: int, step: int) -> np.ndarray:
    """Reference positions 0, step, 2 step, ... plus the last one ``n - 1`` (int32)."""
    pos = list(range(0, n, step))
    if pos[-1] != n - 1:
        pos.append(n - 1)
    return np.asarray(pos, dtype=np.int32)


def extract_patches(x: jax.Array, patch: int) -> jax.Array:
    """All ``patch x patch`` patches: (H, W, C) -> (P_h * P_w, patch^2, C), P = H - patch + 1, row-major."""
    h, w, c = x.shape
    ph, pw = h - patch + 1, w - patch + 1
    cols = [x[i : i + ph, j : j + pw] for i in range(patch) for j in range(patch)]
    return jnp.stack(cols, axis=2).reshape(ph * pw, patch * patch, c)


def fold_patches(pat: jax.Array, shape: tuple[int, int], patch: int) -> jax.Array:
    """Sum patches back into an image (adjoint of :func:`extract_patches`): (P, patch^2, C) -> (H, W, C)."""
    h, w = shape
    ph, pw = h - patch + 1, w - patch + 1
    pat = pat.reshape(ph, pw, patch * patch, -1)
    out = jnp.zeros((h, w, pat.shape[-1]), pat.dtype)
    for i in range(patch):
        for j in range(patch):
            out = out.at[i : i + ph, j : j + pw].add(pat[:, :, i * patch + j])
    return out


def block_match(x: jax.Array, patch: int, window: int, k: int, step: int) -> jax.Array:
    """Indices of the ``k`` most similar patches for each reference patch.

    Args:
      x: (H, W, C) image; distances are sums of squared differences over the patch and channels.
      patch, window (search radius), k, step (reference grid step): static ints.

    Returns:
      (G, k) int32 flat patch indices (``row * P_w + col``, see :func:`extract_patches`),
      G = len(rows grid) * len(cols grid); the reference patch itself is first.
    """
    h, w, _ = x.shape
    ph, pw = h - patch + 1, w - patch + 1
    rr, cc = reference_grid(ph, step), reference_grid(pw, step)
    ref_r = jnp.asarray(np.repeat(rr, len(cc)))
    ref_c = jnp.asarray(np.tile(cc, len(rr)))
    offs = np.stack(np.meshgrid(np.arange(-window, window + 1), np.arange(-window, window + 1), indexing="ij"), -1)
    offs = jnp.asarray(offs.reshape(-1, 2), jnp.int32)
    pad = jnp.pad(x, ((window, window), (window, window), (0, 0)))

    def dist(off: jax.Array) -> jax.Array:
        shifted = jax.lax.dynamic_slice(pad, (window + off[0], window + off[1], 0), x.shape)
        sq = jnp.sum((x - shifted) ** 2, axis=-1)
        ii = jnp.pad(jnp.cumsum(jnp.cumsum(sq, 0), 1), ((1, 0), (1, 0)))
        box = ii[patch:, patch:] - ii[:-patch, patch:] - ii[patch:, :-patch] + ii[:-patch, :-patch]  # (ph, pw)
        d = box[ref_r, ref_c]
        r2, c2 = ref_r + off[0], ref_c + off[1]
        ok = (r2 >= 0) & (r2 < ph) & (c2 >= 0) & (c2 < pw)
        d = jnp.where((off[0] == 0) & (off[1] == 0), -1.0, d)
        return jnp.where(ok, d, jnp.inf)

    d = jax.lax.map(dist, offs, batch_size=64)  # (n_off, G)
    k = min(k, offs.shape[0])
    _, best = jax.lax.top_k(-d.T, k)  # (G, k)
    cand = offs[best]
    return ((ref_r[:, None] + cand[..., 0]) * pw + ref_c[:, None] + cand[..., 1]).astype(jnp.int32)


def aggregate(est: jax.Array, idx: jax.Array, shape: tuple[int, int], patch: int) -> jax.Array:
    """Average overlapping patch estimates: est (G, K, m, C), idx (G, K) -> (H, W, C).

    Pixels no group covers (none, with the reference grid used here) would be 0.
    """
    n = (shape[0] - patch + 1) * (shape[1] - patch + 1)
    flat = idx.reshape(-1)
    sums = jnp.zeros((n, *est.shape[2:]), est.dtype).at[flat].add(est.reshape(-1, *est.shape[2:]))
    cnt = jnp.zeros((n, est.shape[2], 1), est.dtype).at[flat].add(1.0)
    num = fold_patches(sums, shape, patch)
    den = fold_patches(cnt, shape, patch)
    return num / jnp.maximum(den, 1e-12)


def group_pass(
    x: jax.Array, idx: jax.Array, noise_sd: jax.Array, p: float, params: Params
) -> jax.Array:
    """One shrink-and-aggregate pass: image (H, W, C), groups idx (G, K), noise_sd (G,) -> (H, W, C)."""
    pat = extract_patches(x, params.patch)
    est = shrink_groups(pat[idx], noise_sd, p, params)
    return aggregate(est, idx, x.shape[:2], params.patch)


# ----------------------------------------------------------------------------- denoising


@functools.partial(jax.jit, static_argnames=("p", "params", "n"))
def _denoise_stage(
    y: jax.Array, x: jax.Array, sigma: jax.Array, first: jax.Array, p: float, params: Params, n: int
) -> tuple[jax.Array, jax.Array]:
    """``n`` denoising iterations with one block matching; batched over axis 0 (channels or 1)."""

    def one(y1: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
        idx = block_match(x1 + params.delta * (y1 - x1), params.patch, params.window, params.patches, params.grid_step)
        py = extract_patches(y1, params.patch)[idx]

        def body(carry: tuple[jax.Array, jax.Array], _: Any) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
            xk, is_first = carry
            yk = xk + params.delta * (y1 - xk)
            resid = jnp.mean((py - extract_patches(xk, params.patch)[idx]) ** 2, axis=(1, 2, 3))
            sd = params.lam * jnp.sqrt(jnp.abs(sigma**2 - resid))
            sd = jnp.where(is_first, sigma, sd)
            xn = group_pass(yk, idx, sd, p, params)
            return (xn, jnp.asarray(False)), jnp.sqrt(jnp.sum((xn - xk) ** 2))

        (xo, _), diffs = jax.lax.scan(body, (x1, first), None, length=n)
        return xo, diffs

    return jax.vmap(one)(y, x)


class Result(NamedTuple):
    """A restored image (H, W, 3) float32 on [0, 1] and ``diffs``: ``||x_{k+1} - x_k||_F`` per iteration."""

    image: np.ndarray
    diffs: np.ndarray


def check_image(image: Any, what: str = "image") -> np.ndarray:
    """(H, W, 3) finite float32 values within [-1, 2] (noisy [0, 1] data) or InputError."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise InputError(f"{what} must be H x W x 3 (colour), got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise InputError(f"{what} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what} contains NaN or Inf values")
    if a.size and (a.min() < -1.0 or a.max() > 2.0):
        raise InputError(f"{what} values span [{a.min():.3g}, {a.max():.3g}]: expected [0, 1] (noisy data within [-1, 2])")
    return a


def _check_method(method: str, p: float | None) -> tuple[bool, float]:
    m = method.lower()
    if m not in METHODS:
        raise InputError(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    if m in ("qwnnm", "wnnm"):
        p_eff = 1.0
    else:
        p_eff = DEFAULT_P if p is None else float(p)
    if not 0.0 < p_eff <= 1.0:
        raise InputError(f"p must be in (0, 1], got {p_eff}")
    return m.startswith("q"), p_eff


def _progress(enabled: bool, total: int, what: str) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = Progress(*cols, console=Console(stderr=True), transient=True, disable=not enabled)
    return bar, what, total


def _check_size(shape: tuple[int, ...], params: Params) -> None:
    if min(shape[:2]) < params.patch + 1:
        raise InputError(f"image of {shape[0]} x {shape[1]} pixels is too small for {params.patch} x {params.patch} patches")


def _split(a: jax.Array, quaternion: bool) -> jax.Array:
    """(H, W, 3) -> (1, H, W, 3) for quaternion methods, (3, H, W, 1) per channel."""
    return a[None] if quaternion else jnp.moveaxis(a, -1, 0)[..., None]


def _merge(a: jax.Array, quaternion: bool) -> np.ndarray:
    return np.asarray(a[0] if quaternion else jnp.moveaxis(a[..., 0], 0, -1))


def denoise(
    image: Any,
    sigma: float,
    method: str = "qwsnm",
    p: float | None = None,
    params: Params | None = None,
    progress: bool = False,
    return_info: bool = False,
) -> np.ndarray | Result:
    """Denoise a colour image with QWSNM (default), QWNNM or the per-channel WNNM / WSNM.

    Args:
      image: (H, W, 3) noisy image, [0, 1] intensity scale (noise may leave it slightly).
      sigma: noise standard deviation on the 0..255 scale (used as ``sigma / 255``).
      method: ``qwsnm`` | ``qwnnm`` (p = 1) | ``wnnm`` (per channel, p = 1) | ``wsnm`` (per channel).
      p: Schatten exponent in (0, 1] for qwsnm / wsnm (default :data:`DEFAULT_P`).
      params: :class:`Params` (default :func:`params_for_sigma`).
      progress: show a rich progress bar over the outer iterations (stderr).
      return_info: return a :class:`Result` (image and successive differences) instead.

    Returns:
      (H, W, 3) float32 denoised image clipped to [0, 1] (or a :class:`Result`).
    """
    y = check_image(image, "noisy image")
    if not (np.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma must be a positive number (0..255 scale), got {sigma}")
    quat, p_eff = _check_method(method, p)
    params = params or params_for_sigma(sigma)
    _check_size(y.shape, params)
    s = jnp.float32(sigma / 255.0)
    yb = _split(jnp.asarray(y), quat)
    x, diffs = yb, []
    bar, what, total = _progress(progress, params.iters, f"{method} denoise")
    with bar:
        task = bar.add_task(what, total=total)
        done = 0
        while done < params.iters:
            n = min(params.bm_every, params.iters - done)
            x, d = _denoise_stage(yb, x, s, jnp.asarray(done == 0), p_eff, params, n)
            diffs.append(np.sqrt(np.sum(np.asarray(d) ** 2, axis=0)))
            done += n
            bar.update(task, completed=done)
    out = np.clip(_merge(x, quat), 0.0, 1.0).astype(np.float32)
    return Result(out, np.concatenate(diffs)) if return_info else out


# ----------------------------------------------------------------------------- deblurring


def gaussian_kernel(size: int = 25, std: float = 1.6) -> np.ndarray:
    """A normalised (size, size) Gaussian PSF with standard deviation ``std`` pixels (float32, sums to 1)."""
    r = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2.0 * std * std))
    return (g / g.sum()).astype(np.float32)


def motion_kernel(length: int = 20, angle: float = 60.0) -> np.ndarray:
    """A normalised linear motion PSF of ``length`` pixels at ``angle`` degrees (counter-clockwise from x).

    The segment is sampled densely and splatted bilinearly on a square grid of odd side
    ``length + 2`` (float32, sums to 1).
    """
    side = int(length) + 2 + (int(length) + 1) % 2
    k = np.zeros((side, side), np.float64)
    c = (side - 1) / 2.0
    t = np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, 8 * side)
    xs = c + t * math.cos(math.radians(angle))
    ys = c - t * math.sin(math.radians(angle))
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(k, (np.clip(y0 + dy, 0, side - 1), np.clip(x0 + dx, 0, side - 1)), wgt)
    return (k / k.sum()).astype(np.float32)


def kernel_otf(kernel: Any, shape: tuple[int, int]) -> jax.Array:
    """The (H, W) complex transfer function of a PSF centred at its middle pixel (``psf2otf``)."""
    k = np.asarray(kernel, np.float32)
    if k.ndim != 2 or k.shape[0] > shape[0] or k.shape[1] > shape[1]:
        raise InputError(f"kernel must be 2-D and no larger than the image, got {k.shape} for {shape}")
    big = np.zeros(shape, np.float32)
    big[: k.shape[0], : k.shape[1]] = k
    big = np.roll(big, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1))
    return jnp.fft.fft2(jnp.asarray(big))


def blur(image: Any, kernel: Any) -> np.ndarray:
    """Circular (periodic) convolution of each channel with a PSF centred at its middle pixel.

    image (H, W, C) float on any scale; kernel (kh, kw) -> (H, W, C) float32, computed with FFTs.
    """
    x = jnp.asarray(image, jnp.float32)
    otf = kernel_otf(kernel, x.shape[:2])
    out = jnp.fft.ifft2(jnp.fft.fft2(x, axes=(0, 1)) * otf[..., None], axes=(0, 1)).real
    return np.asarray(out, np.float32)


@functools.partial(jax.jit, static_argnames=("p", "params", "n"))
def _deblur_stage(
    state: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    yf: jax.Array,
    otf: jax.Array,
    sigma: jax.Array,
    p: float,
    params: Params,
    n: int,
) -> tuple[tuple[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]:
    """``n`` QADMM iterations with one block matching; state (u, g, d, alpha), batched over axis 0."""

    def one(u0: jax.Array, g0: jax.Array, d0: jax.Array, yf1: jax.Array, a0: jax.Array) -> Any:
        def ustep(g: jax.Array, d: jax.Array, a: jax.Array) -> jax.Array:
            num = jnp.conj(otf)[..., None] * yf1 + a * jnp.fft.fft2(g - d, axes=(0, 1))
            return jnp.fft.ifft2(num / (jnp.abs(otf)[..., None] ** 2 + a), axes=(0, 1)).real

        idx = block_match(ustep(g0, d0, a0), params.patch, params.window, params.patches, params.grid_step)

        def body(carry: Any, _: Any) -> Any:
            u, g, d, a = carry
            un = ustep(g, d, a)
            sd = params.theta * sigma * jnp.sqrt(params.alpha0 / a)
            gn = group_pass(un + d, idx, jnp.full(idx.shape[:1], sd), p, params)
            dn = d + un - gn
            return (un, gn, dn, a * params.mu), jnp.sqrt(jnp.sum((gn - g) ** 2))

        return jax.lax.scan(body, (u0, g0, d0, a0), None, length=n)

    (u, g, d, a), diffs = jax.vmap(one, in_axes=(0, 0, 0, 0, None))(*state[:3], yf, state[3])
    return (u, g, d, a[0]), diffs


def deblur(
    image: Any,
    kernel: Any,
    sigma: float,
    method: str = "qwsnm",
    p: float | None = None,
    params: Params | None = None,
    progress: bool = False,
    return_info: bool = False,
) -> np.ndarray | Result:
    """Deblur (and denoise) a colour image ``y = kernel * x + n`` with QADMM + continuation.

    Args:
      image: (H, W, 3) blurred noisy image, [0, 1] scale; the blur is circular (see :func:`blur`).
      kernel: (kh, kw) PSF, normalised to sum 1 here; centred at its middle pixel.
      sigma: noise standard deviation on the 0..255 scale (used as ``sigma / 255``).
      method, p, progress, return_info: as :func:`denoise`.
      params: :class:`Params` (default :func:`deblur_params`); ``iters``, ``alpha0``,
        ``mu`` and ``theta`` drive QADMM.

    Returns:
      (H, W, 3) float32 restored image clipped to [0, 1] (or a :class:`Result` whose
      ``diffs`` are ``||g_{k+1} - g_k||_F`` per QADMM iteration).
    """
    y = check_image(image, "blurred image")
    k = np.asarray(kernel, np.float32)
    if k.ndim != 2 or not np.all(np.isfinite(k)) or k.sum() <= 0:
        raise InputError("kernel must be a finite 2-D array with a positive sum")
    if not (np.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma must be a positive number (0..255 scale), got {sigma}")
    quat, p_eff = _check_method(method, p)
    params = params or deblur_params()
    if params.mu < 1.0:
        raise InputError(f"continuation factor mu must be >= 1 (1: no continuation), got {params.mu}")
    _check_size(y.shape, params)
    otf = kernel_otf(k / k.sum(), y.shape[:2])
    yb = _split(jnp.asarray(y), quat)
    yf = jnp.fft.fft2(yb, axes=(1, 2))
    state = (yb, yb, jnp.zeros_like(yb), jnp.float32(params.alpha0))
    s = jnp.float32(sigma / 255.0)
    diffs = []
    bar, what, total = _progress(progress, params.iters, f"{method} deblur")
    with bar:
        task = bar.add_task(what, total=total)
        done = 0
        while done < params.iters:
            n = min(params.bm_every, params.iters - done)
            state, d = _deblur_stage(state, yf, otf, s, p_eff, params, n)
            diffs.append(np.sqrt(np.sum(np.asarray(d) ** 2, axis=0)))
            done += n
            bar.update(task, completed=done)
    out = np.clip(_merge(state[1], quat), 0.0, 1.0).astype(np.float32)
    return Result(out, np.concatenate(diffs)) if return_info else out


"""The one quality index behind Q_avg, Q2n, D_lambda, D_lambda_K and D_S.

Wang and Bovik's universal image quality index (UIQI) of two signals x, y is

    Q = [2 mx my / (mx^2 + my^2)] * [2 cov(x, y) / (var(x) + var(y))]

(unbiased, N-1 normalised moments). Its hypercomplex extension Q2n (Garzelli and
Nencini) takes the moments of 2^n-band "onions" (Cayley-Dickson numbers): products
become onion products and ``mx my`` becomes ``|mx| |my|``. Every metric of the toolbox
that uses a quality index goes through :func:`quality_from_moments` below; the
functions here only differ in how they gather the moments:

* :func:`uiqi_blocks`: non-overlapping S x S blocks (the toolbox's ``uqi`` inside
  ``blockproc``, used by QNR/HQNR). No guards: a constant pair of blocks gives NaN,
  as in the toolbox.
* :func:`uiqi_sliding`: every S x S window, stride 1 (the toolbox's ``img_qi``, used by
  Q_avg), with ``img_qi``'s guards for flat windows.
* :func:`q2n`: hypercomplex index on S x S blocks with a shift (``q2n`` /
  ``onions_quality``), including the toolbox's mirror padding and uint16 cast.

Arrays are (..., H, W, C), channels last; values in whatever unit the caller uses (the
toolbox works in DN). Functions are pure and jittable; sizes are static.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError

_EPS = float(np.finfo(np.float64).eps)


def quality_from_moments(mean_prod: jax.Array, mean_sq: jax.Array, cov: jax.Array, var_sum: jax.Array) -> jax.Array:
    """The quality index from its moments.

    Args:
      mean_prod: ``mx * my`` (UIQI) or ``|mx| |my|`` (Q2n).
      mean_sq: ``mx^2 + my^2``.
      cov: covariance (a vector of onion components for Q2n: broadcast against the rest).
      var_sum: ``var(x) + var(y)``.

    Returns:
      ``(2 mean_prod / mean_sq) * (2 cov / var_sum)``; no guard against zero denominators.
    """
    return (2.0 * mean_prod / mean_sq) * (2.0 * cov / var_sum)


# ----------------------------------------------------------------------------- blocks


def blocks(x: jax.Array, block: int, shift: int | None = None) -> jax.Array:
    """Cut (..., H, W, C) into ``block`` x ``block`` blocks starting every ``shift`` pixels.

    Returns (..., nby, P, nbx, Q, C): block (i, j) is ``out[..., i, :, j, :, :]`` flattened
    over its pixel axes -4 and -2 (P = Q = block when ``shift == block``, the default:
    a reshape without copy; otherwise P = 1, Q = block**2, gathered). Blocks must fit:
    ``(nby - 1) * shift + block <= H``.
    """
    shift = block if shift is None else shift
    *lead, h, w, c = x.shape
    nby = (h - block) // shift + 1
    nbx = (w - block) // shift + 1
    if shift == block:
        x = x[..., : nby * block, : nbx * block, :]
        return x.reshape(*lead, nby, block, nbx, block, c)
    rows = (np.arange(nby) * shift)[:, None] + np.arange(block)[None, :]
    cols = (np.arange(nbx) * shift)[:, None] + np.arange(block)[None, :]
    x = x[..., rows[:, None, :, None], cols[None, :, None, :], :]  # (..., nby, nbx, b, b, c)
    return x.reshape(*lead, nby, 1, nbx, block * block, c)


_PIX = (-4, -2)  # pixel axes of a ``blocks`` array


def _block_gram(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per block, ``sum_pixels x_i y_j``: (..., nby, P, nbx, Q, C) -> (..., nby, nbx, C, C).

    A fused broadcast-multiply-reduce: on CPU this beats a batched matrix product of
    tiny 8x8 outputs (which needs two transposed copies) about fourfold.
    """
    return jnp.sum(x[..., :, None] * y[..., None, :], axis=(-5, -3))


def _centered_blocks(x: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
    """Block means (..., nby, nbx, C) and the centred image (..., nby, block, nbx, block, C).

    Non-overlapping blocks by a reshape (no transposition); H, W multiples of ``block``.
    """
    xb = blocks(x, block)
    mean = jnp.mean(xb, axis=_PIX, keepdims=True)
    return mean[..., :, 0, :, 0, :], xb - mean


def uiqi_blocks(x: jax.Array, y: jax.Array, block: int) -> jax.Array:
    """UIQI of each band on non-overlapping ``block`` x ``block`` blocks (toolbox ``uqi``).

    Moments are two-pass and unbiased like MATLAB's ``cov``; no guards, so a flat pair
    of blocks gives NaN as in the toolbox.

    Args:
      x, y: (..., H, W, C) images (any unit), or one of them with C = 1 (broadcast);
        H and W multiples of ``block``.

    Returns:
      (..., H/block, W/block, C) map of indices.
    """
    n = block * block
    mx, dx = _centered_blocks(x, block)
    my, dy = _centered_blocks(y, block)
    vx = jnp.sum(dx * dx, axis=_PIX) / (n - 1)
    vy = jnp.sum(dy * dy, axis=_PIX) / (n - 1)
    cxy = jnp.sum(dx * dy, axis=_PIX) / (n - 1)
    return quality_from_moments(mx * my, mx * mx + my * my, cxy, vx + vy)


def uiqi_blocks_band_pairs(x: jax.Array, block: int) -> jax.Array:
    """UIQI between every pair of bands on non-overlapping blocks.

    Args:
      x: (..., H, W, C), H and W multiples of ``block``.

    Returns:
      (..., H/block, W/block, C, C) symmetric matrices; entry (i, j) is ``uqi`` of band i
      vs band j on that block (the diagonal is 1 for non-flat blocks).
    """
    n = block * block
    mean, d = _centered_blocks(x, block)
    gram = _block_gram(d, d) / (n - 1)
    var = jnp.diagonal(gram, axis1=-2, axis2=-1)
    mi, mj = mean[..., :, None], mean[..., None, :]
    return quality_from_moments(mi * mj, mi * mi + mj * mj, gram, var[..., :, None] + var[..., None, :])


# ------------------------------------------------------------------ sliding windows


def filter_valid(x: jax.Array, taps: np.ndarray, axis: int, dilation: int = 1) -> jax.Array:
    """'valid' correlation of (..., H, W) with 1-D ``taps`` along ``axis`` (-2 or -1).

    Runs as an XLA convolution, which is never fused into its consumers, so filtered
    maps are computed once (fused slice-and-add chains get recomputed per use).
    """
    *lead, h, w = x.shape
    kshape = (1, 1, len(taps), 1) if axis in (-2, x.ndim - 2) else (1, 1, 1, len(taps))
    dil = (dilation, 1) if kshape[2] > 1 else (1, dilation)
    kern = jnp.asarray(np.asarray(taps, dtype=np.float64).reshape(kshape), dtype=x.dtype)
    out = jax.lax.conv_general_dilated(x.reshape(-1, 1, h, w), kern, (1, 1), "VALID", rhs_dilation=dil)
    return out.reshape(*lead, out.shape[-2], out.shape[-1])


def _window_sum(x: jax.Array, k: int, axis: int) -> jax.Array:
    """Sums of ``k`` consecutive samples along ``axis`` (-2 or -1), 'valid'.

    Power-of-two partial sums ``s_2m[i] = s_m[i] + s_m[i + m]`` (pairwise, so a window
    of equal values sums exactly when ``k`` is a power of two), combined along the
    binary expansion of ``k``: about 2 log2(k) operations per sample.
    """
    n_out = x.shape[axis] - k + 1
    powers = {1: x}
    m = 1
    while 2 * m <= k:
        powers[2 * m] = filter_valid(powers[m], np.ones(2), axis, dilation=m)
        m *= 2
    out, offset = None, 0
    for size in sorted(powers, reverse=True):
        if k - offset >= size:
            term = jax.lax.slice_in_dim(powers[size], offset, offset + n_out, axis=axis % x.ndim)
            out = term if out is None else out + term
            offset += size
    return out


def box_sum(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """'valid' sums over ``kh`` x ``kw`` windows of the last two axes of (..., H, W)."""
    return _window_sum(_window_sum(x, kh, -2), kw, -1)


def _flat_windows(x: jax.Array, k: int) -> jax.Array:
    """True where the ``k`` x ``k`` window of the last two axes is exactly constant.

    Counts the neighbour pairs that differ inside each window (sums of 0/1 values, exact
    in floating point).
    """
    dh = (x[..., :, 1:] != x[..., :, :-1]).astype(x.dtype)
    dv = (x[..., 1:, :] != x[..., :-1, :]).astype(x.dtype)
    return (box_sum(dh, k, k - 1) + box_sum(dv, k - 1, k)) == 0.0


def uiqi_sliding(x: jax.Array, y: jax.Array, block: int) -> jax.Array:
    """UIQI of each band on every ``block`` x ``block`` window (toolbox ``img_qi``).

    Window sums are pairwise sums (:func:`box_sum`) of each band minus its global mean
    (equal in exact arithmetic, less cancellation than raw sums). Flat windows give
    exact zero variances and follow ``img_qi``'s guards: both flat ->
    ``2 mx my / (mx^2 + my^2)`` (1 if both means are zero), one flat -> 0.

    Args:
      x, y: (..., H, W, C) images, any unit.
      block: window side.

    Returns:
      (..., H - block + 1, W - block + 1, C) quality map.
    """
    n = block * block
    # channels-first internally: the window sums run along contiguous axes
    x, y = jnp.moveaxis(x, -1, -3), jnp.moveaxis(y, -1, -3)
    cx = jnp.mean(x, axis=(-2, -1), keepdims=True)
    cy = jnp.mean(y, axis=(-2, -1), keepdims=True)
    xs, ys = x - cx, y - cy
    sx, sy, sxx, syy, sxy = box_sum(jnp.stack([xs, ys, xs * xs, ys * ys, xs * ys]), block, block)
    mx, my = sx / n + cx, sy / n + cy
    vx = (sxx - sx * sx / n) / (n - 1)
    vy = (syy - sy * sy / n) / (n - 1)
    cxy = (sxy - sx * sy / n) / (n - 1)
    if block & (block - 1):
        # Power-of-two windows of equal values already give exact zeros (pairwise sums);
        # other sizes need an explicit test.
        h, w = sx.shape[-2], sx.shape[-1]
        flat_x, flat_y = _flat_windows(jnp.stack([x, y]), block)
        mx = jnp.where(flat_x, x[..., :h, :w], mx)
        my = jnp.where(flat_y, y[..., :h, :w], my)
        vx = jnp.where(flat_x, 0.0, vx)
        vy = jnp.where(flat_y, 0.0, vy)
        cxy = jnp.where(flat_x | flat_y, 0.0, cxy)
    mean_prod, mean_sq, var_sum = mx * my, mx * mx + my * my, vx + vy
    safe_sq = jnp.where(mean_sq == 0.0, 1.0, mean_sq)
    safe_var = jnp.where(var_sum == 0.0, 1.0, var_sum)
    q = jnp.where(var_sum != 0.0, quality_from_moments(mean_prod, safe_sq, cxy, safe_var), 2.0 * mean_prod / safe_sq)
    q = jnp.where(mean_sq != 0.0, q, 1.0)
    return jnp.moveaxis(q, -3, -1)


# ------------------------------------------------------------------------------ Q2n


def onion_mult(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Onion (Cayley-Dickson) product along the last axis (length a power of two), NumPy.

    The toolbox's convention, recursively on halves: ``(a, b)(c, d) = (a c - d* b,
    a* d* + c b*)`` with ``*`` the onion conjugate (all components but the first negated;
    the identity on reals).
    """
    n = a.shape[-1]
    if n == 1:
        return a * b
    half = n // 2

    def conj(v: np.ndarray) -> np.ndarray:
        return np.concatenate([v[..., :1], -v[..., 1:]], axis=-1) if v.shape[-1] > 1 else v

    p, q, r, s = a[..., :half], a[..., half:], b[..., :half], b[..., half:]
    left = onion_mult(p, r) - onion_mult(conj(s), q)
    right = onion_mult(conj(p), conj(s)) + onion_mult(r, conj(q))
    return np.concatenate([left, right], axis=-1)


@functools.lru_cache(maxsize=8)
def onion_table(n: int) -> np.ndarray:
    """Structure constants T (n, n, n): ``onion_mult(a, b)[k] = sum_ij a_i b_j T[i, j, k]``."""
    eye = np.eye(n)
    table = onion_mult(eye[:, None, :], eye[None, :, :])
    table.setflags(write=False)
    return table


def matlab_uint16(x: jax.Array) -> jax.Array:
    """MATLAB ``uint16(x)`` as float: round half away from zero, saturate to [0, 65535], NaN -> 0."""
    fl = jnp.floor(x)
    r = jnp.where(x - fl >= 0.5, fl + 1.0, fl)
    r = jnp.clip(r, 0.0, 65535.0)
    return jnp.where(jnp.isnan(x), 0.0, r)


def q2n_pad(x: jax.Array, block: int, shift: int) -> jax.Array:
    """The toolbox's padding before Q2n: mirror (edge repeated) at the bottom/right.

    Pads H to ``(ceil(H/shift) - 1) * shift + block`` and W likewise.
    """
    h, w = x.shape[-3], x.shape[-2]
    ph = (-(-h // shift) - 1) * shift + block - h
    pw = (-(-w // shift) - 1) * shift + block - w
    if ph < 0 or pw < 0 or ph > h or pw > w:
        raise InputError(f"Q2n blocks of {block} with shift {shift} do not fit an image of {h}x{w}")
    if ph == 0 and pw == 0:
        return x
    pad = [(0, 0)] * (x.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
    return jnp.pad(x, pad, mode="symmetric")


def _onions_quality(ref: jax.Array, fus: jax.Array) -> jax.Array:
    """Q2n vector of each block (toolbox ``onions_quality``).

    Args:
      ref, fus: ``blocks`` arrays (..., nby, P, nbx, Q, N), N a power of two, holding
        integers (the uint16-cast images).

    Returns:
      (..., nby, nbx, N) hypercomplex quality of each block.

    The toolbox normalises every band of both blocks with the reference band's mean s
    and std t (t = 0 -> eps; a band with s = 0 is only shifted, by 1 - s, not scaled),
    conjugates the fused onion, and takes unbiased onion moments. Those moments are
    affine in the raw block moments, so we compute them from raw sums instead of
    forming the normalised blocks:
      mean of the normalised reference = 1 in every band;
      mean of the fused one m2_j = sign_j ((mf_j - s_j) tau_j + 1), tau_j = 1/t_j or 1;
      onion covariance = unbias * sum_ij C_ij / t_i * tau_j sign_j * T[i, j, :];
      variance sum = unbias * sum_i (Vr_i / t_i^2 + Vf_i tau_i^2),
    with C, Vr, Vf the biased (cross-)variances and T the onion product table. The raw
    sums are sums of integers, exact in float64, so s = 0, t = 0 and flat blocks are
    detected exactly, as in the toolbox.
    """
    n = ref.shape[-4] * ref.shape[-2]
    nb = ref.shape[-1]
    unbias = n / (n - 1)
    sign = jnp.asarray(np.r_[1.0, -np.ones(nb - 1)], dtype=ref.dtype)
    # Raw sums of the integer blocks: exact in float64 while n * max^2 and (n * max)^2
    # stay below 2**53 (32 x 32 blocks of uint16 values do). Subtracting an offset
    # first would cost a materialised copy of both images on CPU.
    sr, sf = jnp.sum(ref, axis=_PIX), jnp.sum(fus, axis=_PIX)
    srr, sff = jnp.sum(ref * ref, axis=_PIX), jnp.sum(fus * fus, axis=_PIX)
    srf = _block_gram(ref, fus)
    s = sr / n  # block means of the reference
    mf = sf / n
    vr = (srr - sr * sr / n) / n
    vf = (sff - sf * sf / n) / n
    cross = (srf - sr[..., :, None] * sf[..., None, :] / n) / n
    t = jnp.sqrt(vr * unbias)
    t = jnp.where(t == 0.0, _EPS, t)
    tau = jnp.where(s == 0.0, 1.0, 1.0 / t)
    m2 = sign * ((mf - s) * tau + 1.0)
    mod1_sq = float(nb)
    mod2_sq = jnp.sum(m2 * m2, axis=-1)
    mean_prod = np.sqrt(mod1_sq) * jnp.sqrt(mod2_sq)
    mean_sq = mod1_sq + mod2_sq
    var_sum = unbias * jnp.sum(vr / (t * t) + vf * tau * tau, axis=-1)
    scaled = cross / t[..., :, None] * (tau * sign)[..., None, :]
    cov = unbias * jnp.einsum("...ij,ijk->...k", scaled, jnp.asarray(onion_table(nb), dtype=ref.dtype))
    flat = (var_sum == 0.0)[..., None]
    safe_var = jnp.where(flat, 1.0, var_sum[..., None])
    q = quality_from_moments(mean_prod[..., None], mean_sq[..., None], cov, safe_var)
    only_bias = jnp.zeros_like(q).at[..., -1].set(2.0 * mean_prod / mean_sq)
    return jnp.where(flat, only_bias, q)


def q2n_map(ref: jax.Array, fused: jax.Array, block: int = 32, shift: int = 32, *, cast: bool = True) -> jax.Array:
    """Map of the hypercomplex quality Q2n per block (toolbox ``q2n``), ref first.

    Mirror-pads both images as the toolbox does, casts them to uint16 (round, saturate),
    appends zero bands up to a power of two, and scores each ``block`` x ``block`` block
    (blocks every ``shift`` pixels).

    Args:
      ref, fused: (..., H, W, C) in DN (the uint16 cast assumes DN).
      block, shift: block side and step.
      cast: False when both inputs already went through :func:`matlab_uint16` (the
        cast commutes with the padding), to skip a pass over the data.

    Returns:
      (..., nby, nbx) block values ``|q|``.
    """
    if ref.shape != fused.shape:
        raise InputError(f"Q2n needs images of the same shape, got {ref.shape} and {fused.shape}")
    if cast:
        ref, fused = matlab_uint16(ref), matlab_uint16(fused)
    ref, fused = q2n_pad(ref, block, shift), q2n_pad(fused, block, shift)
    c = ref.shape[-1]
    extra = (1 << (c - 1).bit_length()) - c if c > 1 else 0
    if extra:
        pad = [(0, 0)] * (ref.ndim - 1) + [(0, extra)]
        ref, fused = jnp.pad(ref, pad), jnp.pad(fused, pad)
    q = _onions_quality(blocks(ref, block, shift), blocks(fused, block, shift))
    return jnp.sqrt(jnp.sum(q * q, axis=-1))


def q2n(ref: jax.Array, fused: jax.Array, block: int = 32, shift: int = 32, *, cast: bool = True) -> jax.Array:
    """Q2n (Q4 for 4 bands, Q8 for 8): mean of :func:`q2n_map`. (..., H, W, C) DN -> (...)."""
    return jnp.mean(q2n_map(ref, fused, block, shift, cast=cast), axis=(-2, -1))

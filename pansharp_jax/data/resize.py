"""MATLAB-compatible ``imresize`` (bicubic, with antialiasing) in JAX.

The toolbox degrades the PAN for the full-resolution spatial distortion ``D_S`` with
``imresize(PAN, 1/ratio)``; this module reproduces that call on float64 data to
rounding.

How MATLAB resizes (and so how we do), one axis at a time:
  * output length ``ceil(n_in * scale)``;
  * output sample ``i`` (1-based) sits at input coordinate ``u = i/scale + (1 - 1/scale)/2``;
  * the Keys cubic kernel with ``a = -0.5``; when ``scale < 1`` and antialiasing is on,
    the kernel is stretched to ``scale * cubic(scale * x)`` (support ``4/scale``);
  * each output takes the ``ceil(support) + 2`` input samples starting at
    ``floor(u - support/2)``, with weights normalised to sum to 1;
  * out-of-range indices are mirrored with the edge sample repeated
    (``..., 2, 1, 1, 2, ..., n, n, n-1, ...``), i.e. "symmetric" padding;
  * taps whose weight is zero for every output are dropped;
  * the axis with the smaller scale is resized first (rows first on a tie).

The weights and indices are built in NumPy when the function is traced (they depend
only on static sizes) and applied as a sparse weighted sum of gathered rows/columns,
which is the banded matrix product ``W @ x`` without its zeros.

Not reproduced: MATLAB returns integer images in their integer class (rounded); here
the result is always floating point, as for MATLAB's double inputs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return near + far


def output_length(n_in: int, scale: float) -> int:
    """MATLAB's output length for a scale factor: ``ceil(n_in * scale)``."""
    return int(np.ceil(n_in * scale))


@functools.lru_cache(maxsize=64)
def resize_weights(n_in: int, scale: float, antialiasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Weights and source indices of a 1-D bicubic resize (MATLAB ``contributions``).

    Args:
      n_in: input length (pixels).
      scale: output/input size ratio (> 0).
      antialiasing: stretch the kernel by ``1/scale`` when shrinking.

    Returns:
      ``(weights, indices)``, both (n_out, P): output ``i`` is
      ``sum_k weights[i, k] * x[indices[i, k]]`` with 0-based ``indices``. Read-only arrays.
    """
    if n_in < 1:
        raise InputError(f"cannot resize an axis of length {n_in}")
    if not scale > 0:
        raise InputError(f"resize scale must be positive, got {scale}")
    n_out = output_length(n_in, scale)
    shrink = scale < 1.0 and antialiasing
    width = 4.0 / scale if shrink else 4.0
    pos = np.arange(1, n_out + 1, dtype=np.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(pos - width / 2.0)
    ntaps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(ntaps)[None, :]
    dist = pos[:, None] - idx
    weights = scale * _cubic(scale * dist) if shrink else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Mirror out-of-range 1-based indices onto [1, n_in], repeating the edge sample.
    mirror = np.concatenate([np.arange(1, n_in + 1), np.arange(n_in, 0, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, mirror.size)] - 1
    keep = np.any(weights != 0.0, axis=0)
    weights, idx = weights[:, keep], idx[:, keep]
    weights.setflags(write=False)
    idx.setflags(write=False)
    return weights, idx


def _resize_axis(x: jax.Array, n_in: int, scale: float, axis: int, antialiasing: bool) -> jax.Array:
    weights, idx = resize_weights(n_in, float(scale), antialiasing)
    shape = [1] * x.ndim
    shape[axis] = weights.shape[0]
    out = None
    for k in range(weights.shape[1]):
        w = jnp.asarray(weights[:, k].reshape(shape), dtype=x.dtype)
        term = w * jnp.take(x, jnp.asarray(idx[:, k]), axis=axis)
        out = term if out is None else out + term
    return out


def imresize_bicubic(x: jax.Array, scale: float | tuple[float, float], *, antialiasing: bool = True) -> jax.Array:
    """Resize like MATLAB ``imresize(x, scale)`` (bicubic; antialiasing on by default).

    Args:
      x: (..., H, W, C) image, any scale (DN or [0, 1]); leading batch dims optional.
        Integer arrays are converted to the default float dtype.
      scale: output/input size ratio, one number or ``(scale_rows, scale_cols)``.
      antialiasing: widen the kernel when shrinking (MATLAB's default).

    Returns:
      (..., ceil(H * scale), ceil(W * scale), C), floating point, same dtype as a float
      ``x``. Jittable (``scale`` must be static). Use float64 under
      ``jax.enable_x64(True)`` for toolbox-exact numbers.
    """
    x = jnp.asarray(x)
    if x.ndim < 3:
        raise InputError(f"imresize_bicubic expects (..., H, W, C), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    sr, sc = (float(scale), float(scale)) if np.isscalar(scale) else (float(scale[0]), float(scale[1]))
    h, w = x.shape[-3], x.shape[-2]
    steps = [(sr, -3, h), (sc, -2, w)]
    if sc < sr:  # MATLAB resizes the dimension with the smaller scale first
        steps.reverse()
    for s, axis, n in steps:
        if s != 1.0:
            x = _resize_axis(x, n, s, axis % x.ndim, antialiasing)
    return x

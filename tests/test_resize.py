"""MATLAB-compatible bicubic imresize: against a plain NumPy loop and hand-checkable facts."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.data.resize import imresize_bicubic, resize_weights
from pansharp_jax.errors import InputError


def _keys(x: float) -> float:
    """Keys cubic, a = -0.5."""
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _mirror(i: int, n: int) -> int:
    """0-based index reflected into [0, n) with the edge sample repeated (..., 1, 0, 0, 1, ...)."""
    period = 2 * n
    i %= period
    return i if i < n else period - 1 - i


def _resize_1d_loop(v: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """Reference 1-D resize written from MATLAB's documented algorithm, one output at a time."""
    n = len(v)
    n_out = math.ceil(n * scale)
    stretch = antialias and scale < 1
    support = 4 / scale if stretch else 4
    out = np.empty(n_out)
    for o in range(n_out):
        centre = (o + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate
        first = math.floor(centre - support / 2)
        acc = wsum = 0.0
        for j in range(first, first + math.ceil(support) + 2):
            d = centre - j
            w = scale * _keys(scale * d) if stretch else _keys(d)
            acc += w * v[_mirror(j - 1, n)]
            wsum += w
        out[o] = acc / wsum
    return out


def _resize_loop(img: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, C): rows first, then columns (MATLAB's order for equal scales)."""
    h, w, nc = img.shape
    rows = np.stack([np.stack([_resize_1d_loop(img[:, j, c], scale) for j in range(w)], 1) for c in range(nc)], -1)
    return np.stack([np.stack([_resize_1d_loop(rows[i, :, c], scale) for i in range(rows.shape[0])], 0) for c in range(nc)], -1)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 0.7, 1.5, 2.0])
def test_matches_numpy_loop(scale):
    rng = np.random.default_rng(1)
    img = rng.random((23, 17, 2)) * 2047
    with jax.enable_x64(True):
        got = np.asarray(imresize_bicubic(jnp.asarray(img), scale))
    want = _resize_loop(img, scale)
    assert got.shape == want.shape == (math.ceil(23 * scale), math.ceil(17 * scale), 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_constant_image_stays_constant():
    with jax.enable_x64(True):
        out = np.asarray(imresize_bicubic(jnp.full((40, 36, 3), 7.25), 0.25))
    assert out.shape == (10, 9, 3)
    np.testing.assert_allclose(out, 7.25, rtol=0, atol=1e-12)


def test_output_sizes():
    with jax.enable_x64(True):
        assert imresize_bicubic(jnp.zeros((1280, 1280, 1)), 0.25).shape == (320, 320, 1)
        assert imresize_bicubic(jnp.zeros((300, 301, 1)), 1 / 3).shape == (100, 101, 1)
        assert imresize_bicubic(jnp.zeros((10, 12, 1)), (0.5, 0.25)).shape == (5, 3, 1)


def test_linear_ramp_is_reproduced_inside():
    """The cubic kernel (stretched or not) reproduces linear data away from the borders.

    Output o (1-based) sits at input coordinate 4 o - 1.5 for scale 1/4, so a ramp whose
    value is its 1-based index gives exactly that coordinate.
    """
    ramp = np.arange(1, 129, dtype=np.float64)
    img = np.broadcast_to(ramp[:, None, None], (128, 8, 1))
    with jax.enable_x64(True):
        out = np.asarray(imresize_bicubic(jnp.asarray(img), 0.25))[:, 0, 0]
    o = np.arange(1, 33)
    inner = slice(3, 29)  # the stretched kernel reaches 8 samples: stay clear of the borders
    np.testing.assert_allclose(out[inner], (4 * o - 1.5)[inner], rtol=0, atol=1e-11)


def test_weights_sum_to_one_and_indices_in_range():
    w, idx = resize_weights(50, 0.25)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-15)
    assert idx.min() >= 0 and idx.max() < 50
    assert w.shape == idx.shape and w.shape[0] == 13


def test_batch_and_jit():
    rng = np.random.default_rng(2)
    batch = rng.random((3, 16, 20, 2))
    with jax.enable_x64(True):
        f = jax.jit(lambda x: imresize_bicubic(x, 0.5))
        out = np.asarray(f(jnp.asarray(batch)))
        singles = [np.asarray(imresize_bicubic(jnp.asarray(b), 0.5)) for b in batch]
    np.testing.assert_allclose(out, np.stack(singles), rtol=0, atol=1e-14)


def test_bad_input():
    with pytest.raises(InputError):
        imresize_bicubic(jnp.zeros((4, 4)), 0.5)
    with pytest.raises(InputError):
        imresize_bicubic(jnp.zeros((4, 4, 1)), 0.0)

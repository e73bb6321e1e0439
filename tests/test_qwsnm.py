"""QWSNM pieces against brute force written here: GST, block matching, patches, blur; tiny runs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, optimize

from pansharp_jax import restoration as R
from pansharp_jax.errors import InputError
from pansharp_jax.restoration import qwsnm as Q

# tiny, shared by the denoise tests here and in test_restore_cli.py (same jit cache)
TINY = R.Params(patch=3, patches=8, iters=2, window=3, step=2, bm_every=2)


def clean_image(n: int = 24) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx), 0.5 + 0.3 * np.cos(5 * yy), 0.3 + 0.5 * xx * yy], -1)
    img[n // 3 : 2 * n // 3, n // 3 : 2 * n // 3] = (0.9, 0.2, 0.1)
    return img.astype(np.float32)


def brute_prox(y: float, w: float, p: float) -> float:
    """argmin_x 0.5 (x - y)^2 + w |x|^p by a dense grid on [0, |y|] and a bounded refinement."""
    f = lambda x: 0.5 * (x - abs(y)) ** 2 + w * abs(x) ** p  # noqa: E731
    grid = np.linspace(0.0, abs(y), 20001)
    i = int(np.argmin(f(grid)))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    r = optimize.minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    x = r.x if f(r.x) < f(grid[i]) else grid[i]
    return float(np.sign(y) * x)


@pytest.mark.parametrize("p", [0.5, 0.8, 1.0])
def test_gst_equals_brute_force(p: float) -> None:
    rng = np.random.default_rng(int(p * 10))
    y = rng.uniform(-3, 3, 60)
    w = rng.uniform(0.0, 1.5, 60)
    got = np.asarray(R.gst(y.astype(np.float32), w.astype(np.float32), p, iters=60), np.float64)
    obj = lambda x, yy, ww: 0.5 * (x - yy) ** 2 + ww * abs(x) ** p  # noqa: E731
    for g, yy, ww in zip(got, y, w):
        b = brute_prox(yy, ww, p)
        assert obj(g, yy, ww) <= obj(b, yy, ww) + 1e-5, (yy, ww, g, b)
        if abs(obj(0.0, yy, ww) - obj(b, yy, ww)) > 1e-3:  # away from the two-minima tie at tau
            assert abs(g - b) < 1e-3, (yy, ww, g, b)


def test_block_match_finds_the_k_nearest_patches() -> None:
    img = np.random.default_rng(0).uniform(size=(11, 13, 3)).astype(np.float32)
    patch, window, k, step = 3, 2, 4, 3
    idx = np.asarray(Q.block_match(img, patch, window, k, step))
    ph, pw = 11 - patch + 1, 13 - patch + 1
    rows = sorted(set(range(0, ph, step)) | {ph - 1})
    cols = sorted(set(range(0, pw, step)) | {pw - 1})
    assert idx.shape == (len(rows) * len(cols), k)
    g = 0
    for r in rows:
        for c in cols:
            cands = {}
            for dr in range(-window, window + 1):
                for dc in range(-window, window + 1):
                    r2, c2 = r + dr, c + dc
                    if 0 <= r2 < ph and 0 <= c2 < pw:
                        d = np.sum((img[r : r + patch, c : c + patch] - img[r2 : r2 + patch, c2 : c2 + patch]) ** 2)
                        cands[r2 * pw + c2] = d
            want = sorted(cands.values())[:k]
            got = [cands[int(i)] for i in idx[g]]  # KeyError if outside the window
            assert idx[g, 0] == r * pw + c
            np.testing.assert_allclose(sorted(got), want, rtol=1e-4, atol=1e-5)
            g += 1


def test_patches_fold_is_adjoint_and_aggregate_of_exact_patches_is_identity() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(9, 10, 3)).astype(np.float32)
    pat = np.asarray(Q.extract_patches(x, 3))
    assert pat.shape == (7 * 8, 9, 3)
    np.testing.assert_array_equal(pat[8 + 2, 4], x[1 + 1, 2 + 1])  # patch (1, 2), pixel (1, 1)
    z = rng.uniform(size=pat.shape).astype(np.float32)
    lhs = float(np.sum(pat * z))
    rhs = float(np.sum(x * np.asarray(Q.fold_patches(z, (9, 10), 3))))
    assert abs(lhs - rhs) < 1e-3 * abs(lhs)
    idx = Q.block_match(x, 3, 2, 5, 2)
    back = np.asarray(Q.aggregate(Q.extract_patches(x, 3)[idx], idx, (9, 10), 3))
    np.testing.assert_allclose(back, x, atol=1e-6)


def test_blur_is_circular_convolution_and_kernels() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(12, 14, 3)).astype(np.float32)
    k = rng.uniform(size=(5, 3)).astype(np.float32)
    want = np.stack([ndimage.convolve(x[..., c], k, mode="wrap") for c in range(3)], -1)
    np.testing.assert_allclose(R.blur(x, k), want, atol=1e-5)
    g = R.gaussian_kernel(15, 1.6)
    assert abs(g.sum() - 1) < 1e-6 and np.allclose(g, g.T) and g[7, 7] == g.max()
    m = R.motion_kernel(12, 60.0)
    assert abs(m.sum() - 1) < 1e-6 and m.shape[0] % 2 == 1
    yy, xx = np.mgrid[0 : m.shape[0], 0 : m.shape[1]]
    c = (m.shape[0] - 1) / 2
    cov = np.cov(np.stack([(xx - c).ravel(), (c - yy).ravel()]), aweights=m.ravel())
    ev, vec = np.linalg.eigh(cov)
    ang = np.degrees(np.arctan2(vec[1, -1], vec[0, -1])) % 180
    assert abs(ang - 60) < 2 and np.sqrt(12 * ev[-1]) == pytest.approx(12, rel=0.15)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.mark.parametrize("method", ["qwsnm", "wnnm"])
def test_denoise_improves_and_is_deterministic(method: str) -> None:
    clean = clean_image()
    noisy = clean + np.random.default_rng(3).normal(0, 25 / 255, clean.shape).astype(np.float32)
    a = R.denoise(noisy, 25, method=method, params=TINY, return_info=True)
    b = R.denoise(noisy, 25, method=method, params=TINY)
    assert a.image.shape == clean.shape and a.image.dtype == np.float32
    assert a.image.min() >= 0 and a.image.max() <= 1
    np.testing.assert_array_equal(a.image, b)
    assert psnr(clean, a.image) > psnr(clean, np.clip(noisy, 0, 1)) + 3.0
    assert a.diffs.shape == (2,) and np.all(np.isfinite(a.diffs))


def test_deblur_continuation_converges_and_deblurs() -> None:
    clean = clean_image()
    k = R.gaussian_kernel(7, 1.2)
    y = R.blur(clean, k) + np.random.default_rng(4).normal(0, 2 / 255, clean.shape).astype(np.float32)
    prm = R.deblur_params(patch=3, patches=8, window=3, step=2, iters=16, bm_every=8, mu=1.5)
    r = R.deblur(y, k, 2, method="qwsnm", params=prm, return_info=True)
    d = r.diffs
    assert d.shape == (16,) and np.all(np.isfinite(d))
    assert d[-1] < 0.02 * d[0]  # successive differences go to ~0 with continuation
    assert np.all(d[-5:] < 0.05) and np.all(np.diff(d[-6:]) < 0)
    assert psnr(clean, r.image) > psnr(clean, np.clip(y, 0, 1)) + 1.0


def test_bad_inputs_raise_input_error() -> None:
    img = clean_image(12)
    with pytest.raises(InputError, match="H x W x 3"):
        R.denoise(img[..., :2], 25, params=TINY)
    bad = img.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        R.denoise(bad, 25, params=TINY)
    with pytest.raises(InputError, match="unknown method"):
        R.denoise(img, 25, method="bm3d", params=TINY)
    with pytest.raises(InputError, match="sigma"):
        R.denoise(img, -1, params=TINY)
    with pytest.raises(InputError, match="expected"):
        R.denoise(img * 255, 25, params=TINY)
    with pytest.raises(InputError, match="p must be"):
        R.denoise(img, 25, p=1.5, params=TINY)


def test_per_channel_wrapper_equals_method_wnnm() -> None:
    from pansharp_jax.restoration.wnnm import denoise_per_channel

    noisy = clean_image() + np.random.default_rng(3).normal(0, 25 / 255, (24, 24, 3)).astype(np.float32)
    np.testing.assert_array_equal(denoise_per_channel(noisy, 25, params=TINY), R.denoise(noisy, 25, method="wnnm", params=TINY))

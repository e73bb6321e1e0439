"""FSDS against an independent NumPy port of the authors' definition (CHW, torch-like std)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.metrics import fsds, fsds_per_band, fsds_scores
from pansharp_jax.metrics.fsds import fsds_array, fsds_bands_array


def reference_fsds_chw(pred: np.ndarray, target: np.ndarray) -> float:
    """The paper's recipe on (C, H, W) arrays, written from the formula in plain NumPy."""

    def halves(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (x - x.mean()) / x.std(ddof=1)  # torch's default std is unbiased
        c, h, w = x.shape
        if h % 2:
            x = np.concatenate([x, np.zeros((c, 1, w))], axis=1)
        f = np.fft.rfft2(x)  # over the last two axes (H, W)
        n = f.shape[1] // 2
        f1, f2 = f[:, :n], f[:, n:][:, ::-1]
        return f1.cumsum(1).cumsum(2), f2.cumsum(1).cumsum(2)

    p1, p2 = halves(pred)
    t1, t2 = halves(target)
    err = (np.abs(p1 - t1) ** 2).sum() + (np.abs(p2 - t2) ** 2).sum()
    ref = (np.abs(t1) ** 2).sum() + (np.abs(t2) ** 2).sum()
    return float(-10 * np.log10(err / ref))


def _pair(h: int, w: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.random((h, w, c))
    p = np.clip(t + 0.1 * rng.standard_normal((h, w, c)), 0, 1)
    return p, t


@pytest.mark.parametrize("shape", [(32, 24, 3), (31, 17, 4), (16, 16, 1)])
def test_fsds_equals_reference_on_chw(shape):
    p, t = _pair(*shape)
    expected = reference_fsds_chw(p.transpose(2, 0, 1), t.transpose(2, 0, 1))
    assert fsds(p, t) == pytest.approx(expected, abs=1e-9)


def test_per_band_is_reference_on_each_band():
    p, t = _pair(20, 28, 3, seed=1)
    expected = [reference_fsds_chw(p[None, :, :, b], t[None, :, :, b]) for b in range(3)]
    np.testing.assert_allclose(fsds_per_band(p, t), expected, atol=1e-9)
    assert fsds_scores(p, t)["FSDS"] == pytest.approx(np.mean(expected), abs=1e-9)
    cut = 3
    inner = [reference_fsds_chw(p[None, cut:-cut, cut:-cut, b], t[None, cut:-cut, cut:-cut, b]) for b in range(3)]
    assert fsds_scores(p, t, cut=cut)["FSDS"] == pytest.approx(np.mean(inner), abs=1e-9)


def test_negated_image_is_minus_6db():
    # Standardised -T against T: the error spectrum is 2 F_T, so FSDS = -10 log10(4).
    _, t = _pair(16, 20, 2, seed=2)
    assert fsds(1.0 - t, t) == pytest.approx(-10 * math.log10(4.0), abs=1e-9)


def test_identical_and_affine_copies_are_the_optimum():
    _, t = _pair(16, 16, 3, seed=3)
    assert fsds(t, t) == math.inf  # documented: +inf, no epsilon
    assert fsds(0.5 * t + 0.2, t) > 250.0  # standardises to the same array (rounding only)
    assert all(v == math.inf for v in fsds_per_band(t, t))


def test_worse_prediction_scores_lower():
    rng = np.random.default_rng(4)
    t = rng.random((32, 32, 2))
    small = t + 0.01 * rng.standard_normal(t.shape)
    large = t + 0.2 * rng.standard_normal(t.shape)
    assert fsds(small, t) > fsds(large, t) + 10.0


def test_batched_jittable_matches_single():
    rng = np.random.default_rng(5)
    t = rng.random((3, 2, 12, 10, 4)).astype(np.float32)
    p = (t + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)
    out = np.asarray(jax.jit(fsds_array)(jnp.asarray(p), jnp.asarray(t)))
    assert out.shape == (3, 2) and out.dtype == np.float32
    for i in range(3):
        for j in range(2):
            ref = reference_fsds_chw(p[i, j].transpose(2, 0, 1).astype(np.float64), t[i, j].transpose(2, 0, 1).astype(np.float64))
            assert out[i, j] == pytest.approx(ref, abs=1e-3)
    bands = np.asarray(fsds_bands_array(p, t))
    assert bands.shape == (3, 2, 4)
    ref = reference_fsds_chw(p[1, 0, :, :, 2][None].astype(np.float64), t[1, 0, :, :, 2][None].astype(np.float64))
    assert bands[1, 0, 2] == pytest.approx(ref, abs=1e-3)
    grad = jax.grad(lambda x: fsds_array(x, jnp.asarray(t[0, 0])))(jnp.asarray(p[0, 0]))
    assert np.isfinite(np.asarray(grad)).all()


def test_bad_inputs_raise_one_line_errors():
    p, t = _pair(8, 8, 2)
    with pytest.raises(InputError, match="same shape"):
        fsds(p, t[:4])
    with pytest.raises(InputError, match="constant"):
        fsds(p, np.zeros_like(t))
    q = p.copy()
    q[..., 1] = 0.3
    with pytest.raises(InputError, match="band 1"):
        fsds_per_band(q, t)
    q[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fsds(q, t)
    with pytest.raises(InputError, match="cut"):
        fsds_scores(p, t, cut=4)

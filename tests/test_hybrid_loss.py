"""The DWT, the Fourier and wavelet losses and the hybrid loss against plain NumPy formulas."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.nn import dwt
from pansharp_jax.train import losses
from pansharp_jax.train.cli_args import load_sibling

RNG = np.random.default_rng(0)


def _img(*shape: int) -> np.ndarray:
    return RNG.uniform(0.0, 1.0, size=shape).astype(np.float32)


# ----------------------------------------------------------------------------- NumPy references


def np_haar2(x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Haar by hand on (..., H, W, C), H and W even: 2x2 blocks a b / c d."""
    a, b = x[..., 0::2, 0::2, :], x[..., 0::2, 1::2, :]
    c, d = x[..., 1::2, 0::2, :], x[..., 1::2, 1::2, :]
    ll = (a + b + c + d) / 2
    lh = (a - b + c - d) / 2  # lowpass over rows, highpass over columns
    hl = (a + b - c - d) / 2
    hh = (a - b - c + d) / 2
    return ll, (lh, hl, hh)


def np_db2_lowpass() -> np.ndarray:
    s3 = math.sqrt(3.0)
    return np.array([1 + s3, 3 + s3, 3 - s3, 1 - s3]) / (4 * math.sqrt(2.0))


def analysis_matrix(n: int, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N/2 x N) periodized lowpass and highpass analysis matrices: row k holds the filter at 2k."""
    lo, hi = np.zeros((n // 2, n)), np.zeros((n // 2, n))
    g = np.array([(-1) ** j * h[len(h) - 1 - j] for j in range(len(h))])
    for k in range(n // 2):
        for j in range(len(h)):
            lo[k, (2 * k + j) % n] += h[j]
            hi[k, (2 * k + j) % n] += g[j]
    return lo, hi


def np_dwt2_matrix(x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """One level on (H, W, C) with explicit matrices: rows then columns."""
    lo_h, hi_h = analysis_matrix(x.shape[0], h)
    lo_w, hi_w = analysis_matrix(x.shape[1], h)

    def apply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("ih,hwc,jw->ijc", a, x.astype(np.float64), b)

    return apply(lo_h, lo_w), (apply(lo_h, hi_w), apply(hi_h, lo_w), apply(hi_h, hi_w))


def np_wavelet_l1_haar(p: np.ndarray, t: np.ndarray, levels: int) -> float:
    ll = p.astype(np.float64) - t.astype(np.float64)
    terms = []
    for _ in range(levels):
        ll, bands = np_haar2(ll)
        terms += [np.mean(np.abs(b)) for b in bands]
    terms.append(np.mean(np.abs(ll)))
    return float(np.mean(terms))


def np_fft_l1(p: np.ndarray, t: np.ndarray, norm: str = "ortho") -> float:
    fp = np.fft.rfft2(p.astype(np.float64), axes=(-3, -2), norm=norm)
    ft = np.fft.rfft2(t.astype(np.float64), axes=(-3, -2), norm=norm)
    return float(np.mean(np.abs(fp.real - ft.real)) + np.mean(np.abs(fp.imag - ft.imag)))


# ----------------------------------------------------------------------------- DWT


def test_filters_are_orthonormal_wavelets() -> None:
    for name, length in (("haar", 2), ("db2", 4), ("sym2", 4), ("db1", 2)):
        h, g = dwt.wavelet_filters(name)
        assert len(h) == length
        assert h.sum() == pytest.approx(math.sqrt(2.0))
        assert (h**2).sum() == pytest.approx(1.0)
        assert g.sum() == pytest.approx(0.0, abs=1e-12)
        assert float(h @ g) == pytest.approx(0.0, abs=1e-12)
    h, g = dwt.wavelet_filters("db2")
    np.testing.assert_allclose(h, np_db2_lowpass(), atol=1e-15)
    assert float(np.arange(4) @ g) == pytest.approx(0.0, abs=1e-12)  # second vanishing moment
    assert float(h[0] * h[2] + h[1] * h[3]) == pytest.approx(0.0, abs=1e-12)  # orthogonal to its 2-shift
    with pytest.raises(InputError):
        dwt.wavelet_filters("coif9")


def test_haar_equals_hand_formula_batched_and_unbatched() -> None:
    x = _img(2, 8, 12, 3)
    ll, bands = dwt.dwt2(jnp.asarray(x), "haar")
    ref_ll, ref_bands = np_haar2(x)
    np.testing.assert_allclose(np.asarray(ll), ref_ll, atol=1e-6)
    for got, ref in zip(bands, ref_bands, strict=True):
        np.testing.assert_allclose(np.asarray(got), ref, atol=1e-6)
    ll1, _ = dwt.dwt2(jnp.asarray(x[1]), "haar")  # no batch dimension
    np.testing.assert_allclose(np.asarray(ll1), ref_ll[1], atol=1e-6)


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_dwt_equals_periodized_matrix_reference(wavelet: str) -> None:
    x = _img(8, 10, 2)
    h = np_db2_lowpass() if wavelet == "db2" else np.array([1.0, 1.0]) / math.sqrt(2.0)
    ll, bands = dwt.dwt2(jnp.asarray(x), wavelet)
    ref_ll, ref_bands = np_dwt2_matrix(x, h)
    np.testing.assert_allclose(np.asarray(ll), ref_ll, atol=1e-5)
    for got, ref in zip(bands, ref_bands, strict=True):
        np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_multilevel_energy_and_perfect_reconstruction(wavelet: str) -> None:
    x = _img(2, 16, 24, 3)
    ll, details = dwt.wavedec2(jnp.asarray(x), wavelet, levels=3)
    assert ll.shape == (2, 2, 3, 3)
    assert [b[0].shape[1:3] for b in details] == [(8, 12), (4, 6), (2, 3)]
    energy = float(jnp.sum(ll**2)) + sum(float(jnp.sum(b**2)) for bands in details for b in bands)
    assert energy == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-5)
    rec = dwt.waverec2(ll, details, wavelet)
    np.testing.assert_allclose(np.asarray(rec), x, atol=1e-5)


def test_odd_side_repeats_last_row_and_column() -> None:
    x = _img(7, 9, 2)
    padded = np.concatenate([x, x[-1:]], axis=0)
    padded = np.concatenate([padded, padded[:, -1:]], axis=1)
    ll, bands = dwt.dwt2(jnp.asarray(x), "haar")
    ref_ll, ref_bands = np_haar2(padded)
    assert ll.shape == (4, 5, 2)
    np.testing.assert_allclose(np.asarray(ll), ref_ll, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bands[2]), ref_bands[2], atol=1e-6)


# ----------------------------------------------------------------------------- losses


def test_fft_loss_equals_numpy_rfft2() -> None:
    p, t = _img(2, 16, 12, 3), _img(2, 16, 12, 3)
    assert float(losses.fft_l1(jnp.asarray(p), jnp.asarray(t))) == pytest.approx(np_fft_l1(p, t), rel=1e-5)
    got = float(losses.fft_l1(jnp.asarray(p), jnp.asarray(t), norm="backward"))
    assert got == pytest.approx(np_fft_l1(p, t, "backward"), rel=1e-5)
    assert float(losses.fft_l1(jnp.asarray(p), jnp.asarray(p))) == 0.0


def test_wavelet_loss_equals_numpy_haar_and_db2() -> None:
    p, t = _img(2, 16, 16, 3), _img(2, 16, 16, 3)
    for levels in (1, 3):
        got = float(losses.wavelet_l1(jnp.asarray(p), jnp.asarray(t), wavelet="haar", levels=levels))
        assert got == pytest.approx(np_wavelet_l1_haar(p, t, levels), rel=1e-5)
    # db2, one level, per sample through the matrix reference
    d = (p - t).astype(np.float64)
    terms = []
    for i in range(2):
        ll, bands = np_dwt2_matrix(d[i], np_db2_lowpass())
        terms.append([np.abs(b) for b in (ll, *bands)])
    ref = np.mean([np.mean(np.stack([terms[i][k] for i in range(2)])) for k in range(4)])
    got = float(losses.wavelet_l1(jnp.asarray(p), jnp.asarray(t), wavelet="db2", levels=1))
    assert got == pytest.approx(ref, rel=1e-5)


def test_hybrid_is_the_weighted_sum_and_reads_the_config() -> None:
    p, t = _img(2, 16, 16, 4), _img(2, 16, 16, 4)
    w = {"l1": 0.7, "l2": 0.3, "fft": 0.05, "dwt": 0.2, "wavelet": "haar", "levels": 2, "fft_norm": "ortho"}
    d = p.astype(np.float64) - t
    ref = (
        0.7 * np.mean(np.abs(d))
        + 0.3 * np.mean(d**2)
        + 0.05 * np_fft_l1(p, t)
        + 0.2 * np_wavelet_l1_haar(p, t, 2)
    )
    fn = losses.get_loss("hybrid", w)
    assert float(fn(jnp.asarray(p), jnp.asarray(t))) == pytest.approx(ref, rel=1e-5)
    cfg = ml_collections.ConfigDict({"loss": "hybrid", "loss_weights": ml_collections.ConfigDict(w)})
    assert float(losses.loss_from_config(cfg)(jnp.asarray(p), jnp.asarray(t))) == pytest.approx(ref, rel=1e-5)
    # plain strings still work, and ignore loss_weights
    cfg.loss = "l1"
    assert float(losses.loss_from_config(cfg)(jnp.asarray(p), jnp.asarray(t))) == pytest.approx(np.mean(np.abs(d)))
    assert losses.get_loss("MSE") is losses.l2
    with pytest.raises(InputError):
        losses.get_loss("hybrid", {"fourier": 1.0})
    with pytest.raises(InputError):
        losses.get_loss("hybrid", {"wavelet": "nope"})
    with pytest.raises(InputError):
        losses.get_loss("huber")


def test_gradients_finite_and_vmap_per_sample() -> None:
    p, t = _img(3, 8, 8, 2), _img(3, 8, 8, 2)
    fn = jax.jit(losses.get_loss("hybrid", {"wavelet": "db2", "levels": 2}))
    for pred in (jnp.asarray(p), jnp.asarray(t)):  # also at pred == target (|x| kink)
        g = jax.grad(fn)(pred, jnp.asarray(t))
        assert g.shape == p.shape and bool(jnp.all(jnp.isfinite(g)))
    g = np.asarray(jax.grad(fn)(jnp.asarray(p), jnp.asarray(t)))
    assert np.abs(g).max() > 0
    per = jax.vmap(fn)(jnp.asarray(p), jnp.asarray(t))  # as the eval step calls it
    assert per.shape == (3,)
    assert float(per[1]) == pytest.approx(float(fn(jnp.asarray(p[1]), jnp.asarray(t[1]))), rel=1e-6)
    # the default config's loss block builds, and switching it to hybrid by override works
    default = load_sibling(str(Path(__file__).resolve().parents[1] / "configs" / "default.py"), "default")
    c = default.get_config()
    c.loss, c.loss_weights.fft = "hybrid", 0.0
    ref = float(losses.l1(p, t)) + 0.1 * np_wavelet_l1_haar(p, t, 2)
    assert float(losses.loss_from_config(c)(jnp.asarray(p), jnp.asarray(t))) == pytest.approx(ref, rel=1e-5)

"""Classical MHIF baselines: known answers on synthetic scenes, CAVE balloons x4 beats bicubic."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.classical import mhif as cm
from pansharp_jax.data import hsi
from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.errors import InputError


def _psnr(f: np.ndarray, g: np.ndarray) -> float:
    mse = np.mean((np.asarray(f, np.float64) - g) ** 2, axis=(0, 1))
    return float(np.mean(10 * np.log10(1.0 / mse)))


def _smooth_field(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    f = [np.sin(rng.uniform(2, 9) * xx + rng.uniform(0, 3)) * np.cos(rng.uniform(2, 9) * yy) for _ in range(k)]
    return 0.5 + 0.4 * np.stack(f, -1) + 0.05 * rng.uniform(-1, 1, (h, w, k))


def test_glp_hs_is_exact_when_the_hsi_is_in_the_msi_span() -> None:
    rng = np.random.default_rng(0)
    msi = _smooth_field(rng, 32, 40, 3)
    gains, offsets = rng.uniform(-0.5, 1.0, (3, 9)), rng.uniform(0, 0.2, 9)
    x = msi @ gains + offsets  # every HS band a linear combination of the MSI bands
    with jax.enable_x64(True):
        lr = hsi.blur_decimate(jnp.asarray(x), 4, "zsl")
        fused = np.asarray(cm.glp_hs(None, lr, jnp.asarray(msi), ratio=4))
        batch = np.asarray(cm.glp_hs(None, jnp.stack([lr, lr]), jnp.asarray(np.stack([msi, msi])), ratio=4))
        # select: each HS band a gain times one MSI band plus an offset
        pick = np.zeros((3, 9))
        pick[rng.integers(0, 3, 9), np.arange(9)] = rng.uniform(0.3, 1.2, 9)
        y = msi @ pick + offsets
        lr_y = hsi.blur_decimate(jnp.asarray(y), 4, "zsl")
        sel = np.asarray(cm.glp_hs(None, lr_y, jnp.asarray(msi), ratio=4, synth="select"))
    np.testing.assert_allclose(fused, x, atol=1e-9)
    np.testing.assert_allclose(batch[1], x, atol=1e-9)
    np.testing.assert_allclose(sel, y, atol=1e-9)


def test_cnmf_recovers_a_low_rank_scene() -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:64, 0:64] / 64
    fields = [np.clip(np.sin(6 * xx) + 0.3, 0, None), np.clip(np.cos(5 * yy), 0, None), 0.5 + np.sin(9 * xx * yy) / 2]
    a = np.stack(fields, -1)
    a[:16, :16], a[:16, -16:], a[-16:, :16] = [1, 0, 0], [0, 1, 0], [0, 0, 1]  # pure regions
    a /= a.sum(-1, keepdims=True)
    e = np.full((3, 12), 0.1)
    e[0, :4], e[1, 4:8], e[2, 8:] = 0.9, 0.9, 0.9
    x = a @ (e * rng.uniform(0.7, 1.0, e.shape))  # 3 endmembers, non-negative abundances
    srf = np.zeros((12, 3))
    srf[:4, 0], srf[4:8, 1], srf[8:, 2] = 1.0, 1.0, 1.0
    s = hsi.simulate_mhif(x, srf, ratio=4)
    out = np.asarray(cm.cnmf(None, s.lrms, s.pan, ratio=4, srf=hsi.normalise_srf(srf), endmembers=3))
    assert out.min() >= 0
    assert _psnr(out, x) > 60.0
    assert _psnr(np.asarray(imresize_bicubic(jnp.asarray(s.lrms), 4)), x) < 30.0


def test_estimate_srf_recovers_the_simulated_one() -> None:
    rng = np.random.default_rng(2)
    x = _smooth_field(rng, 32, 32, 8)
    srf = hsi.normalise_srf(rng.uniform(0, 1, (8, 3)))
    s = hsi.simulate_mhif(x, srf, ratio=4)
    np.testing.assert_allclose(cm.estimate_srf(s.lrms, s.pan, ratio=4), srf, atol=1e-6)


def test_balloons_x4_both_beat_bicubic(data_dir: Path) -> None:
    s = hsi.load_cave_scene("hs/cave_balloons_256.mat", ratio=4)
    lr, ms = s.lrms.astype(np.float32), s.pan.astype(np.float32)
    bicubic = _psnr(np.asarray(imresize_bicubic(jnp.asarray(lr), 4)), s.gt)
    glp = _psnr(np.asarray(cm.glp_hs(None, lr, ms, ratio=4)), s.gt)
    cnmf = _psnr(np.asarray(cm.cnmf(None, lr, ms, ratio=4, srf=hsi.load_srf())), s.gt)
    assert bicubic > 25.0
    assert glp > bicubic + 10.0 and cnmf > bicubic + 10.0


def test_bad_inputs() -> None:
    lr, ms = np.zeros((4, 4, 5)), np.zeros((16, 16, 3))
    with pytest.raises(InputError, match="params=None"):
        cm.glp_hs({}, lr, ms)
    with pytest.raises(InputError, match="ratio"):
        cm.glp_hs(None, lr, ms[:12], ratio=4)
    with pytest.raises(InputError, match="synth"):
        cm.glp_hs(None, lr, ms, synth="pca")
    with pytest.raises(InputError, match="endmembers"):
        cm.cnmf(None, lr, ms, srf=np.ones((5, 3)), endmembers=6)
    with pytest.raises(InputError, match="srf"):
        cm.cnmf(None, lr, ms, srf=np.ones((3, 5)))

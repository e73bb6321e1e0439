"""MHIF metrics against plain NumPy transcriptions of PSNR, SAM, ERGAS and SSIM (Wang et al.)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import convolve2d

from pansharp_jax.errors import InputError
from pansharp_jax.metrics import evaluate_mhif


def _psnr(f: np.ndarray, g: np.ndarray) -> float:
    return float(np.mean([10 * np.log10(1.0 / np.mean((f[..., b] - g[..., b]) ** 2)) for b in range(g.shape[-1])]))


def _sam(f: np.ndarray, g: np.ndarray) -> float:
    angles = []
    for a, b in zip(f.reshape(-1, f.shape[-1]), g.reshape(-1, g.shape[-1])):
        c = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
        angles.append(np.degrees(np.arccos(np.clip(c, -1, 1))))
    return float(np.mean(angles))


def _ergas(f: np.ndarray, g: np.ndarray, ratio: int) -> float:
    terms = [np.mean((f[..., b] - g[..., b]) ** 2) / np.mean(g[..., b]) ** 2 for b in range(g.shape[-1])]
    return float(100.0 / ratio * np.sqrt(np.mean(terms)))


def _ssim(f: np.ndarray, g: np.ndarray) -> float:
    x = np.arange(11) - 5.0
    win = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    win /= win.sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for b in range(g.shape[-1]):
        p, q = g[..., b], f[..., b]

        def flt(a: np.ndarray) -> np.ndarray:
            return convolve2d(a, win, mode="valid")

        mp, mq = flt(p), flt(q)
        vp, vq, cpq = flt(p * p) - mp**2, flt(q * q) - mq**2, flt(p * q) - mp * mq
        vals.append(np.mean((2 * mp * mq + c1) * (2 * cpq + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2))))
    return float(np.mean(vals))


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.05, 0.95, (24, 20, 6))
    fused = np.clip(gt + rng.normal(0, 0.03, gt.shape), 0, 1)
    return fused, gt


def test_matches_numpy_transcriptions(pair: tuple[np.ndarray, np.ndarray]) -> None:
    fused, gt = pair
    m = evaluate_mhif(fused, gt, ratio=8)
    assert m["convention"] == "mhif"
    assert m["PSNR"] == pytest.approx(_psnr(fused, gt), rel=1e-10)
    assert m["SAM"] == pytest.approx(_sam(fused, gt), rel=1e-9)
    assert m["ERGAS"] == pytest.approx(_ergas(fused, gt, 8), rel=1e-10)
    assert m["SSIM"] == pytest.approx(_ssim(fused, gt), rel=1e-9)


def test_batch_and_ratio(pair: tuple[np.ndarray, np.ndarray]) -> None:
    fused, gt = pair
    m = evaluate_mhif(np.stack([fused, gt]), np.stack([gt, gt]), ratio=4)
    assert m["PSNR"].shape == (2,)
    assert m["ERGAS"][0] == pytest.approx(_ergas(fused, gt, 4), rel=1e-10)
    assert m["ERGAS"][1] == 0.0 and m["SAM"][1] == pytest.approx(0.0, abs=1e-5) and m["SSIM"][1] == pytest.approx(1.0)
    # ERGAS scales as 1 / ratio
    assert evaluate_mhif(fused, gt, ratio=4)["ERGAS"] == pytest.approx(2 * evaluate_mhif(fused, gt, ratio=8)["ERGAS"])


def test_bad_inputs(pair: tuple[np.ndarray, np.ndarray]) -> None:
    fused, gt = pair
    with pytest.raises(InputError):
        evaluate_mhif(fused[:-1], gt, ratio=4)
    with pytest.raises(InputError):
        evaluate_mhif(fused, gt, ratio=0)
    with pytest.raises(InputError):
        evaluate_mhif(fused[:8, :8], gt[:8, :8], ratio=4)

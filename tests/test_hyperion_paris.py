"""experiments/hyperion_paris.py: consistency figures against NumPy, and the real-data run end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy.optimize import nnls

from pansharp_jax.classical.mhif import bicubic
from pansharp_jax.data.hsi import load_paris_hs_ms
from pansharp_jax.metrics import evaluate_mhif

REPO = Path(__file__).resolve().parents[1]
B3 = np.outer([1.0, 4.0, 6.0, 4.0, 1.0], [1.0, 4.0, 6.0, 4.0, 1.0]) / 256.0


def _script():
    spec = importlib.util.spec_from_file_location("hyperion_paris", REPO / "experiments" / "hyperion_paris.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _np_degrade(x: np.ndarray, r: int = 3) -> np.ndarray:
    """HySure's degradation written out: circular 5 x 5 B3-spline blur, then x[0::r, 0::r]."""
    out = sum(B3[u, v] * np.roll(x, (2 - u, 2 - v), axis=(0, 1)) for u in range(5) for v in range(5))
    return out[::r, ::r]


def _np_psnr(ref: np.ndarray, x: np.ndarray) -> float:
    mse = ((ref - x) ** 2).reshape(-1, ref.shape[-1]).mean(axis=0)
    return float(np.mean(10 * np.log10(1.0 / mse)))


def _np_sam(ref: np.ndarray, x: np.ndarray) -> float:
    cos = (ref * x).sum(-1) / np.sqrt((ref * ref).sum(-1) * (x * x).sum(-1))
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())


def _np_ergas(ref: np.ndarray, x: np.ndarray, r: int) -> float:
    mse = ((ref - x) ** 2).reshape(-1, ref.shape[-1]).mean(axis=0)
    mu = ref.reshape(-1, ref.shape[-1]).mean(axis=0)
    return float(100 / r * np.sqrt(np.mean(mse / mu**2)))


def _np_corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 0.9, (24, 18, 6))
    w = np.array([0.0, 0.3, 0.2, 0.0, 0.4, 0.1])
    return x, w, x @ w


def test_consistency_figures_equal_numpy_formulas() -> None:
    s = _script()
    x, w, _ = _synthetic()
    rng = np.random.default_rng(1)
    lr = _np_degrade(x)
    pan = (x @ w + 0.02 * rng.standard_normal(x.shape[:2]))[..., None]
    fused = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1)

    srf_np = np.stack([nnls(lr.reshape(-1, 6), _np_degrade(pan)[..., 0].ravel())[0]], axis=1)
    srf = s.pan_srf(lr, pan)
    np.testing.assert_allclose(srf, srf_np, rtol=1e-8, atol=1e-10)

    got = s.full_resolution_consistency(fused, lr, pan, srf)
    low, proj = _np_degrade(fused), fused @ srf_np[:, 0]
    want = {
        "PSNR_spec": _np_psnr(lr, low), "SAM_spec": _np_sam(lr, low), "ERGAS_spec": _np_ergas(lr, low, 3),
        "PSNR_pan": _np_psnr(pan, proj[..., None]), "CC_pan": _np_corr(proj, pan[..., 0]),
    }  # fmt: skip
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9), k
    assert 0 < got["SAM_spec"] < 20 and 0 < got["CC_pan"] < 1


def test_a_cube_consistent_by_construction_scores_perfectly() -> None:
    s = _script()
    x, w, pan = _synthetic(2)
    lr = _np_degrade(x)  # the LR-HSI is the degraded HR cube, and the PAN its projection by w
    srf = s.pan_srf(lr, pan[..., None])
    np.testing.assert_allclose(srf[:, 0], w, atol=1e-9)
    got = s.full_resolution_consistency(x, lr, pan[..., None], srf)
    assert got["PSNR_spec"] > 200 and got["SAM_spec"] < 1e-5 and got["ERGAS_spec"] < 1e-9
    assert got["PSNR_pan"] > 150 and got["CC_pan"] == pytest.approx(1.0, abs=1e-12)
    blurred = s.spectral_consistency(np.repeat(np.repeat(lr, 3, 0), 3, 1), lr)  # nearest upsampling is not consistent
    assert blurred["PSNR_spec"] < 60 and blurred["SAM_spec"] > 0.1


def test_composite_bands_are_the_hyperion_bands_near_860_650_550_nm() -> None:
    s = _script()
    numbers = np.r_[8:58, 77:225]  # Hyperion's calibrated bands: VNIR 8-57, SWIR 77-224
    assert tuple(int(numbers[i]) for i in s.composite_bands(numbers)) == (51, 30, 20)
    assert s.guide_bands([51, 30, 20], [(9, 10), (11, 16), (18, 25), (28, 33), (42, 45), (49, 53)]) == (5, 3, 2)


def test_real_run_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "paris"
    assert _script().main(["--out", str(out), "--methods", "bicubic,glp_hs"]) == 0
    assert (out / "hyperion_paris.png").stat().st_size > 50_000
    report = json.loads((out / "hyperion_paris.json").read_text())
    md = (out / "hyperion_paris.md").read_text()
    assert md.count("| Method |") == 2 and "| GLP-HS |" in md
    assert [m["name"] for m in report["methods"]] == ["bicubic", "glp_hs"]
    fr = {r["method"]: r["metrics"] for r in report["full_resolution"]["results"]}
    assert set(fr) == {"bicubic", "glp_hs"} and not report["full_resolution"]["skipped"]
    assert fr["glp_hs"]["CC_pan"] > fr["bicubic"]["CC_pan"]  # GLP-HS injects the PAN's detail

    scene = load_paris_hs_ms(data_dir / "hs" / "paris_hyperion_ali_hs_ms.mat", ratio=3)
    with jax.enable_x64(True):
        up = np.clip(np.asarray(bicubic(None, scene.lrms, scene.pan, ratio=3)), 0.0, 1.0)
    want = evaluate_mhif(up, scene.gt, ratio=3)
    rr = {r["method"]: r["metrics"] for r in report["reduced_resolution"]["results"]}
    for k in ("PSNR", "SAM", "ERGAS", "SSIM"):
        assert rr["bicubic"][k] == pytest.approx(want[k], rel=1e-9), k


def test_clear_errors(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    s = _script()
    assert s.main(["--out", str(tmp_path / "a"), "--methods", "bicubic,nosuchmethod"]) == 2
    assert "unknown method 'nosuchmethod'" in capsys.readouterr().err
    assert s.main(["--out", str(tmp_path / "b"), "--ckpt", "infn"]) == 2
    assert "NAME=WORKDIR" in capsys.readouterr().err
    monkeypatch.delenv("PANSHARP_DATA")
    assert s.main(["--out", str(tmp_path / "c")]) == 2
    assert "PANSHARP_DATA is not set" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")

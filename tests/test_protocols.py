"""Evaluation presets: each one against a plain NumPy transcription of its convention.

The transcriptions below are written from the conventions' descriptions (MATLAB
``I(cut:end-cut)`` cuts, ``analysis_accu``'s SAM with its rounding and its pi, Pearson CC,
scikit-image's default SSIM as explicit window loops), not from our code. The toolbox
preset is checked against the MATLAB toolbox's own values (specs/evaluation_protocol.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from pansharp_jax.cli import main
from pansharp_jax.data.demo import write_demo_scene
from pansharp_jax.errors import InputError
from pansharp_jax.metrics import evaluate_full, evaluate_reduced
from pansharp_jax.metrics.protocols import (
    PROTOCOLS,
    Protocol,
    evaluate_full_protocol,
    evaluate_reduced_protocol,
    get_protocol,
    register_protocol,
)

# --- NumPy transcriptions --------------------------------------------------------------------


def matlab_cut(x: np.ndarray, cut: int) -> np.ndarray:
    """MATLAB x(cut:end-cut, cut:end-cut, :) (1-based, inclusive)."""
    if cut == 0:
        return x
    h, w = x.shape[:2]
    rows = np.arange(cut, h - cut + 1) - 1
    cols = np.arange(cut, w - cut + 1) - 1
    return x[np.ix_(rows, cols)]


def np_sam_deg(g: np.ndarray, f: np.ndarray) -> float:
    num = (g * f).sum(-1)
    den = np.linalg.norm(g, axis=-1) * np.linalg.norm(f, axis=-1)
    ok = den > 0
    ang = np.arccos(np.clip(num[ok] / den[ok], -1, 1))
    return float(np.degrees(ang.sum() / ok.sum()))


def np_sam_pancollection(g: np.ndarray, f: np.ndarray) -> float:
    """analysis_accu: acos of the cosine (NaN -> 0), / count of positive norms, round 6, x 180 / 3.14159256."""
    dot = np.einsum("hwc,hwc->hw", g, f)
    t = np.sqrt(np.einsum("hwc,hwc->hw", g, g) * np.einsum("hwc,hwc->hw", f, f))
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.arccos(dot / t)
    a[np.isnan(a)] = 0.0
    mean = a.sum() / np.count_nonzero(t > 0)
    return round(mean, 6) * 180 / 3.14159256


def np_ergas(g: np.ndarray, f: np.ndarray, ratio: int) -> float:
    terms = [np.mean((g[..., b] - f[..., b]) ** 2) / np.mean(g[..., b]) ** 2 for b in range(g.shape[-1])]
    return 100 / ratio * math.sqrt(sum(terms) / len(terms))


def np_psnr_bands(g: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean([10 * math.log10(1 / np.mean((g[..., b] - f[..., b]) ** 2)) for b in range(g.shape[-1])]))


def np_cc(g: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean([np.corrcoef(g[..., b].ravel(), f[..., b].ravel())[0, 1] for b in range(g.shape[-1])]))


def np_ssim_skimage_default(g: np.ndarray, f: np.ndarray) -> float:
    """scikit-image structural_similarity(data_range=1): 7x7 box, ddof-1 moments, 3-px frame dropped."""
    c1, c2 = 0.01**2, 0.03**2
    h, w, c = g.shape
    per_band = []
    for b in range(c):
        vals = []
        for i in range(3, h - 3):
            for j in range(3, w - 3):
                x = g[i - 3 : i + 4, j - 3 : j + 4, b].ravel()
                y = f[i - 3 : i + 4, j - 3 : j + 4, b].ravel()
                mx, my = x.mean(), y.mean()
                vx, vy = x.var(ddof=1), y.var(ddof=1)
                cxy = np.cov(x, y, ddof=1)[0, 1]
                vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
        per_band.append(np.mean(vals))
    return float(np.mean(per_band))


@pytest.fixture(scope="module")
def wv3(data_dir: Path) -> dict[str, np.ndarray]:
    """The toolbox's GSA product of rr/wv3_cdif.mat and its GT, on [0, 1]."""
    gt = scipy.io.loadmat(data_dir / "rr" / "wv3_cdif.mat")["gt"].astype(np.float64)
    fused = scipy.io.loadmat(data_dir / "golden" / "wv3_cdif_GSA.mat")["I_F"].astype(np.float64) / 2047.0
    return {"gt": gt, "fused": fused}


# --- reduced resolution ------------------------------------------------------------------------


def test_toolbox_presets_give_the_matlab_toolbox_values(wv3: dict[str, np.ndarray]) -> None:
    # specs/evaluation_protocol.md, wv3_cdif GSA: Q2n 0.890726326401 (cut 21), 0.843176335292 (nocut)
    cut = evaluate_reduced_protocol(wv3["fused"], wv3["gt"], ratio=4, max_dn=2047.0, protocol="toolbox")
    nocut = evaluate_reduced_protocol(wv3["fused"], wv3["gt"], ratio=4, max_dn=2047.0, protocol="toolbox-nocut")
    assert cut["Q2n"] == pytest.approx(0.890726326401, abs=1e-9)
    assert cut["SAM"] == pytest.approx(5.53699108854, abs=1e-9)
    assert cut["ERGAS"] == pytest.approx(5.12433611246, abs=1e-9)
    assert nocut["Q2n"] == pytest.approx(0.843176335292, abs=1e-9)
    assert nocut["SAM"] == pytest.approx(5.56755685468, abs=1e-9)
    assert list(cut) == ["Q2n", "Q_avg", "SAM", "ERGAS", "SCC", "PSNR", "SSIM"]


def test_cut30_is_the_toolbox_on_the_matlab_30_pixel_crop(wv3: dict[str, np.ndarray]) -> None:
    out = evaluate_reduced_protocol(wv3["fused"], wv3["gt"], ratio=4, max_dn=2047.0, protocol="cut30")
    g, f = matlab_cut(wv3["gt"], 30), matlab_cut(wv3["fused"], 30)
    assert g.shape == (197, 197, 8)
    assert out["SAM"] == pytest.approx(np_sam_deg(g, f), rel=1e-10)
    assert out["ERGAS"] == pytest.approx(np_ergas(g, f, 4), rel=1e-10)
    assert out["PSNR"] == pytest.approx(np_psnr_bands(g, f), rel=1e-10)
    # Q2n on the crop equals the toolbox's Q2n run without a cut on the already-cropped images
    assert out["Q2n"] == pytest.approx(evaluate_reduced(f, g, ratio=4, cut=0)["Q2n"], abs=1e-12)
    base = evaluate_reduced_protocol(wv3["fused"], wv3["gt"], ratio=4, max_dn=2047.0, protocol="toolbox")
    assert out["Q2n"] != pytest.approx(base["Q2n"], abs=1e-6)  # the cut really moves the number


def test_pancollection_preset_is_analysis_accu(wv3: dict[str, np.ndarray]) -> None:
    out = evaluate_reduced_protocol(wv3["fused"], wv3["gt"], ratio=4, max_dn=2047.0, protocol="pancollection")
    assert list(out) == ["SAM", "ERGAS", "PSNR"]  # no Q2n: it is commented out there
    g, f = wv3["gt"][0:-1, 0:-1], wv3["fused"][0:-1, 0:-1]  # dim_cut = 1: img[dim_cut-1:-dim_cut]
    assert out["SAM"] == pytest.approx(np_sam_pancollection(g, f), abs=1e-12)
    assert out["ERGAS"] == pytest.approx(np_ergas(g, f, 4), rel=1e-10)
    assert out["PSNR"] == pytest.approx(np_psnr_bands(g, f), rel=1e-10)
    # its SAM differs from the toolbox's exact degrees only by the rounding and the pi
    assert out["SAM"] != np_sam_deg(g, f)
    assert out["SAM"] == pytest.approx(np_sam_deg(g, f), rel=1e-5)


def test_efficient_mif_preset_adds_cc_and_skimage_ssim() -> None:
    rng = np.random.default_rng(3)
    gt = rng.uniform(0.1, 0.9, (40, 40, 3))
    fused = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    out = evaluate_reduced_protocol(fused, gt, ratio=4, max_dn=1023.0, protocol="efficient-mif")
    assert list(out) == ["SAM", "ERGAS", "PSNR", "CC", "SSIM"]
    g, f = gt[:-1, :-1], fused[:-1, :-1]
    assert out["CC"] == pytest.approx(np_cc(g, f), rel=1e-10)
    assert out["SSIM"] == pytest.approx(np_ssim_skimage_default(g, f), rel=1e-10)
    assert out["SAM"] == pytest.approx(np_sam_pancollection(g, f), abs=1e-12)


# --- full resolution ---------------------------------------------------------------------------


def _fr_scene(data_dir: Path, name: str) -> dict[str, np.ndarray]:
    m = scipy.io.loadmat(data_dir / "fr" / name)
    ms = m["I_MS"].astype(np.float64)[:128, :128] / 2047.0
    pan = m["I_PAN"].astype(np.float64)[:512, :512, None] / 2047.0
    from pansharp_jax.data.wald import interp23tap

    exp = np.asarray(interp23tap(ms, 4))
    return {"lrms": ms, "pan": pan, "exp": exp}


def test_toolbox_full_resolution_preset_equals_evaluate_full(data_dir: Path) -> None:
    s = _fr_scene(data_dir, "ikonos_pnn.mat")
    a = evaluate_full_protocol(s["exp"], s["lrms"], s["pan"], sensor="IKONOS", ratio=4, max_dn=2047.0, protocol="toolbox")
    b = evaluate_full(s["exp"], s["lrms"], s["pan"], sensor="IKONOS", ratio=4, max_dn=2047.0)
    assert a == pytest.approx(b, abs=0)


def test_efficient_mif_full_resolution_uses_its_dn_table_clip_and_ikonos_mtf(data_dir: Path) -> None:
    s = _fr_scene(data_dir, "ikonos_pnn.mat")
    bright = s["exp"] * 1.3  # values above 1 are clipped by that convention
    assert bright.max() > 1
    for sensor, dn, mtf in (("QB", 2047.0, "IKONOS"), ("GF2", 1023.0, "IKONOS"), ("IKONOS", 1023.0, "IKONOS"), ("WV4", 2047.0, "WV4")):
        got = evaluate_full_protocol(bright, s["lrms"], s["pan"], sensor=sensor, ratio=4, max_dn=2047.0, protocol="efficient-mif")
        ref = evaluate_full(np.clip(bright, 0, 1), s["lrms"], s["pan"], sensor=mtf, ratio=4, max_dn=dn)
        assert got == pytest.approx(ref, abs=1e-12), sensor
    own = evaluate_full(np.clip(bright, 0, 1), s["lrms"], s["pan"], sensor="QB", ratio=4, max_dn=2047.0)
    got_qb = evaluate_full_protocol(bright, s["lrms"], s["pan"], sensor="QB", ratio=4, protocol="efficient-mif")
    assert got_qb["D_lambda_K"] != pytest.approx(own["D_lambda_K"], abs=1e-9)  # the MTF swap matters


# --- registry and errors -----------------------------------------------------------------------


def test_unknown_protocol_and_bad_presets_are_one_line_errors() -> None:
    with pytest.raises(InputError, match="unknown protocol 'matlab2'; known: toolbox"):
        get_protocol("matlab2")
    with pytest.raises(InputError, match="unknown metrics"):
        Protocol("x", "here", "test", reduced_keys=("SAM", "Q9"))
    with pytest.raises(InputError, match="border cut"):
        Protocol("x", "here", "test", cut=-1)
    with pytest.raises(InputError, match="exists"):
        register_protocol(dataclasses.replace(PROTOCOLS["toolbox"]))


def test_a_registered_protocol_is_usable_by_name(wv3: dict[str, np.ndarray]) -> None:
    p = register_protocol(Protocol("test-cut5", "this test", "cut 5", cut=5, reduced_keys=("ERGAS",)), overwrite=True)
    try:
        out = evaluate_reduced_protocol(wv3["fused"], wv3["gt"], ratio=4, protocol="test-cut5")
        assert out == {"ERGAS": pytest.approx(np_ergas(matlab_cut(wv3["gt"], 5), matlab_cut(wv3["fused"], 5), 4), rel=1e-10)}
        assert p.describe()["cut"] == 5
    finally:
        PROTOCOLS.pop("test-cut5")


# --- the command line --------------------------------------------------------------------------


def test_eval_protocol_is_recorded_in_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = write_demo_scene(tmp_path / "demo.npz", "rr")
    assert main(["fuse", "-m", "exp", "-i", str(scene), "-o", str(tmp_path / "f.npz")]) == 0
    js = tmp_path / "m.json"
    assert main(["eval", "-f", str(tmp_path / "f.npz"), "-i", str(scene), "--protocol", "pancollection", "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert doc["protocol"] == "pancollection" and set(doc["metrics"]) == {"SAM", "ERGAS", "PSNR", "FSDS"}
    from pansharp_jax.data.io import load_scene
    from pansharp_jax.metrics import fsds_per_band

    sc = load_scene(scene)
    with np.load(tmp_path / "f.npz") as z:
        mean_band = float(np.mean(fsds_per_band(z["fused"], sc.gt)))
    assert doc["metrics"]["FSDS"] == pytest.approx(mean_band, rel=1e-6)  # FSDS beside every preset
    assert "pancollection" in capsys.readouterr().out  # the table title names the protocol
    assert main(["eval", "-f", str(tmp_path / "f.npz"), "-i", str(scene), "--protocol", "nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err

"""The embedded demo scene and ``pansharp demo``.

The scene must be deterministic, have the documented shapes and range, and be a true Wald
simulation: LRMS and the 256x256 PAN are re-derived here from the GT and the native PAN.
Independent physical checks: the material table has the textbook spectral shapes, and the
PAN is (up to blur and noise) the documented weighted sum of the bands.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest

from pansharp_jax.cli import main
from pansharp_jax.data import demo
from pansharp_jax.data.wald import wald_degrade

# A subset keeps the test fast; `pansharp demo` itself runs every classical method and trains
# FusionNet for DEMO_TRAIN_STEPS steps (here a few, enough to check the plumbing).
DEMO_METHODS = ["exp", "gsa", "mtf_glp_hpm", "fusionnet"]
TRAIN_STEPS = 4


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return demo.make_demo_arrays()


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    rc = main(["demo", "--out", str(out), "--methods", ",".join(DEMO_METHODS), "--train-steps", str(TRAIN_STEPS), "--no-progress"])
    return out, rc


def test_deterministic(arrays: dict[str, np.ndarray]) -> None:
    again = demo.make_demo_arrays()
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], again[k], err_msg=k)
    other = demo.make_native(seed=demo.DEMO_SEED + 1)[1]
    assert not np.array_equal(other, arrays["pan_native"]), "the seed must change the layout"


def test_shapes_and_range(arrays: dict[str, np.ndarray]) -> None:
    assert arrays["gt"].shape == (256, 256, 4)
    assert arrays["lrms"].shape == (64, 64, 4)
    assert arrays["pan"].shape == (256, 256, 1)
    assert arrays["pan_native"].shape == (1024, 1024, 1)
    for k, a in arrays.items():
        assert a.dtype == np.float64, k
        assert np.isfinite(a).all(), k
        assert 0.0 <= a.min() and a.max() <= 1.0, k
        assert a.std() > 0.02, f"{k} should have contrast"
    # GT and native PAN are integer 11-bit DN
    for k in ("gt", "pan_native"):
        dn = arrays[k] * 2047.0
        np.testing.assert_allclose(dn, np.rint(dn), atol=1e-9, err_msg=k)


def test_lrms_and_pan_are_wald_degraded(arrays: dict[str, np.ndarray]) -> None:
    with jax.enable_x64(True):
        lrms, pan = wald_degrade(
            jnp.asarray(arrays["gt"], jnp.float64), jnp.asarray(arrays["pan_native"], jnp.float64), "QB", 4
        )
    np.testing.assert_allclose(np.asarray(lrms), arrays["lrms"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(pan), arrays["pan"], rtol=0, atol=1e-12)


def test_scene_objects() -> None:
    rr, fr = demo.demo_scene("rr"), demo.demo_scene("fr")
    assert rr.has_gt and not fr.has_gt
    assert rr.sensor.name == "QB" and rr.ratio == 4 and rr.bits == 11
    np.testing.assert_array_equal(rr.lrms, fr.lrms)
    np.testing.assert_array_equal(rr.pan, fr.pan)
    with pytest.raises(ValueError):
        demo.demo_scene("xx")


def test_materials_follow_physics() -> None:
    m = demo.load_materials()
    assert len(m) >= 10
    for name, s in m.items():
        assert s.shape == (4,) and ((s > 0) & (s < 1)).all(), name
    blue, green, red, nir = range(4)
    for veg in ("crop", "grass", "forest"):
        assert m[veg][nir] > 4 * m[veg][red], f"{veg}: red edge"
        assert m[veg][green] > m[veg][red] and m[veg][green] > m[veg][blue], f"{veg}: green peak"
    for water in ("water_clear", "water_turbid"):
        assert m[water][nir] < m[water][red] < 0.1, f"{water}: NIR absorption"
    assert (np.diff(m["soil"]) > 0).all(), "soil brightens with wavelength"
    assert (m["wet_soil"] < m["soil"]).all(), "wet soil is darker"


def test_pan_is_weighted_sum_of_bands(arrays: dict[str, np.ndarray]) -> None:
    gt, pan = arrays["gt"], arrays["pan"][..., 0]
    w = np.array(demo.PAN_WEIGHTS) / sum(demo.PAN_WEIGHTS)
    synth = gt @ w
    corr = np.corrcoef(synth.ravel(), pan.ravel())[0, 1]
    assert corr > 0.9, corr
    # the scene holds vegetation (high NDVI) and water (NIR below red)
    ndvi = (gt[..., 3] - gt[..., 2]) / (gt[..., 3] + gt[..., 2])
    assert (ndvi > 0.5).mean() > 0.2
    assert ((gt[..., 3] < gt[..., 2]) & (gt[..., 3] < 0.05)).mean() > 0.01


def test_demo_command_writes_everything(demo_out: tuple[Path, int]) -> None:
    out, rc = demo_out
    assert rc == 0
    for name in ("rr_metrics.csv", "rr_metrics.json", "rr_metrics.md", "fr_metrics.csv", "fr_metrics.json",
                 "fr_metrics.md", "rr_grid.png", "fr_grid.png", "demo_rr.npz", "demo_fr.npz"):  # fmt: skip
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rr = json.loads((out / "rr_metrics.json").read_text())
    fr = json.loads((out / "fr_metrics.json").read_text())
    assert rr["mode"] == "rr" and fr["mode"] == "fr"
    assert [r["method"] for r in rr["results"]] == DEMO_METHODS
    for r in rr["results"]:
        assert set(r["metrics"]) == {"Q2n", "Q_avg", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "FSDS"}
    for r in fr["results"]:
        assert set(r["metrics"]) == {"D_lambda", "D_lambda_K", "D_S", "QNR", "HQNR"}
    by = {r["method"]: r["metrics"] for r in rr["results"]}
    # pan-sharpening must beat plain interpolation on a scene built to have PAN detail
    assert by["gsa"]["ERGAS"] < by["exp"]["ERGAS"]
    assert by["gsa"]["Q2n"] > by["exp"]["Q2n"]
    # EXP injects no PAN detail: the inter-band QNR distortion is exactly 0 (toolbox property)
    exp_fr = next(r["metrics"] for r in fr["results"] if r["method"] == "exp")
    assert abs(exp_fr["D_lambda"]) < 1e-12
    with open(out / "rr_metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == DEMO_METHODS
    labels = {r["method"]: r["label"] for r in rr["results"]}
    assert labels["fusionnet"] == "FusionNet (demo-trained)"
    # grids, cells of 268 x 290 px under a 34 px header: rr = [GT, LRMS, PAN], [4 fused],
    # [4 error maps] + 66 px colour bar; fr = [LRMS, PAN], [4 fused]
    assert mpimg.imread(out / "rr_grid.png").shape[:2] == (34 + 3 * 290 + 66, 4 * 268)
    assert mpimg.imread(out / "fr_grid.png").shape[:2] == (34 + 2 * 290, 4 * 268)


def test_demo_training_run_is_a_checkpoint_workdir(demo_out: tuple[Path, int]) -> None:
    """The demo's network trains on the GT-free full-resolution scene only, and its run is a
    normal workdir that `--ckpt` restores (the FusionNet row is that checkpoint's product)."""
    from pansharp_jax.models import fuse
    from pansharp_jax.train.restore import restore_params

    out, rc = demo_out
    assert rc == 0
    run = out / "fusionnet_demo"
    restored = restore_params(run)
    assert restored.step == TRAIN_STEPS and restored.model_config.name == "fusionnet"
    with np.load(run / "train.npz") as z:
        gt, lrms = z["gt"], z["lrms"]
    # references are 32x32 cuts of the (rotated/mirrored) 64x64 full-resolution LRMS, never the 256x256 GT
    assert gt.shape[1:] == (32, 32, 4) and lrms.shape[1:] == (8, 8, 4) and len(gt) == 8 * 45
    fr_lrms = demo.demo_scene("fr").lrms.astype(np.float32)
    np.testing.assert_array_equal(gt[0], fr_lrms[:32, :32])
    sc = demo.demo_scene("rr")
    fused = np.asarray(fuse(restored.params, sc.lrms.astype(np.float32), sc.pan.astype(np.float32), model_config=restored.model_config))
    rr = json.loads((out / "rr_metrics.json").read_text())
    ergas = next(r["metrics"]["ERGAS"] for r in rr["results"] if r["method"] == "fusionnet")
    from pansharp_jax import metrics

    product = np.clip(fused.astype(np.float64), 0.0, 1.0)  # the demo scores products, clipped to [0, 1]
    assert abs(metrics.evaluate_reduced(product, sc.gt, ratio=4, max_dn=2047.0)["ERGAS"] - ergas) < 1e-6


def test_demo_scene_file_loads_back(demo_out: tuple[Path, int]) -> None:
    from pansharp_jax.data.io import load_scene

    out, _ = demo_out
    sc = load_scene(out / "demo_rr.npz")
    ref = demo.demo_scene("rr")
    assert sc.sensor.name == "QB" and sc.ratio == 4 and sc.bits == 11
    np.testing.assert_array_equal(sc.lrms, ref.lrms)
    np.testing.assert_array_equal(sc.pan, ref.pan)
    np.testing.assert_array_equal(sc.gt, ref.gt)
    assert not load_scene(out / "demo_fr.npz").has_gt

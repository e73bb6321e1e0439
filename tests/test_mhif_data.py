"""MHIF data: degradation vs SciPy, SRF, CAVE/Harvard/Paris/HISR loaders, training patches."""

from __future__ import annotations

from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io
from scipy.signal import convolve2d

from pansharp_jax.data import hsi
from pansharp_jax.data.pipeline import ArraySource, build_sources
from pansharp_jax.data.scene import Scene
from pansharp_jax.errors import InputError


def _fspecial(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def _degrade_np(x: np.ndarray, psf: np.ndarray, r: int, phase: int = 0, boundary: str = "symm") -> np.ndarray:
    bands = [convolve2d(x[..., b], psf, boundary=boundary, mode="same")[phase::r, phase::r] for b in range(x.shape[-1])]
    return np.stack(bands, axis=-1)


@pytest.fixture(scope="module")
def cube() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (32, 24, 3))


@pytest.mark.parametrize("ratio", [4, 8])
def test_zsl_degradation_matches_scipy(cube: np.ndarray, ratio: int) -> None:
    with jax.enable_x64(True):
        out = np.asarray(hsi.blur_decimate(jnp.asarray(cube), ratio, "zsl"))
    np.testing.assert_allclose(out, _degrade_np(cube, _fspecial(7, 3.0), ratio), atol=1e-12)


def test_circular_phase_box_and_starck_murtagh(cube: np.ndarray) -> None:
    d = hsi.Degradation("t", "gaussian", 5, 1.2, phase=1, boundary="circular")
    sm = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
    with jax.enable_x64(True):
        x = jnp.asarray(cube)
        circ = np.asarray(hsi.blur_decimate(x, 4, d))
        box = np.asarray(hsi.blur_decimate(x, 4, "mhf"))
        smo = np.asarray(hsi.blur_decimate(x[:30], 3, "hysure"))
        batched = np.asarray(hsi.blur_decimate(jnp.stack([x, 2 * x]), 4, "zsl"))
    np.testing.assert_allclose(circ, _degrade_np(cube, _fspecial(5, 1.2), 4, 1, "wrap"), atol=1e-12)
    np.testing.assert_allclose(box, cube.reshape(8, 4, 6, 4, 3).mean(axis=(1, 3)), atol=1e-12)
    np.testing.assert_allclose(smo, _degrade_np(cube[:30], sm, 3, 0, "wrap"), atol=1e-12)
    np.testing.assert_allclose(batched[1], 2 * batched[0], atol=1e-12)
    with pytest.raises(InputError):
        hsi.blur_decimate(jnp.zeros((10, 10, 1)), 4, "zsl")
    with pytest.raises(InputError):
        hsi.get_degradation("nope")


def test_nikon_srf_is_create_f(data_dir: Path) -> None:
    r = hsi.load_srf()  # hs/nikon_d700_srf_31x3.mat under $PANSHARP_DATA
    assert r.shape == (31, 3)
    np.testing.assert_allclose(r.sum(axis=0), 1.0)
    # create_F integer weights, each row normalised: red starts at 2/255, blue peaks at 30/251
    assert r[0, 0] == pytest.approx(2 / 255) and r[6, 2] == pytest.approx(30 / 251)


def test_cave_scene_is_the_simulation(data_dir: Path) -> None:
    s = hsi.load_cave_scene("hs/cave_balloons_256.mat", ratio=4)
    raw = scipy.io.loadmat(data_dir / "hs" / "cave_balloons_256.mat")["Omsi"].astype(np.float64) / 65535.0
    assert s.task == "mhif" and s.ratio == 4 and s.assumed == {}
    assert s.lrms.shape == (64, 64, 31) and s.pan.shape == (256, 256, 3) and s.gt.shape == (256, 256, 31)
    np.testing.assert_allclose(s.gt, raw)
    srf = scipy.io.loadmat(data_dir / "hs" / "nikon_d700_srf_31x3.mat")["R"]
    np.testing.assert_allclose(s.pan, np.einsum("hwb,bk->hwk", raw, srf / srf.sum(0)), atol=1e-12)
    np.testing.assert_allclose(s.lrms[..., 10:12], _degrade_np(raw[..., 10:12], _fspecial(7, 3.0), 4), atol=1e-12)


def test_cave_food_is_cropped(data_dir: Path) -> None:
    s = hsi.load_cave_scene("hs/cave_fake_and_real_food_201.mat", ratio=8)
    assert s.lrms.shape == (25, 25, 31) and s.pan.shape == (200, 200, 3)
    assert s.assumed["crop"] == "201x201 -> 200x200 (top-left)"


def test_scene_guide_bands() -> None:
    lr, guide = np.full((4, 4, 5), 0.5), np.full((16, 16, 3), 0.5)
    assert Scene(lrms=lr, pan=guide, ratio=4, task="mhif").pan.shape == (16, 16, 3)
    with pytest.raises(InputError, match="one band"):
        Scene(lrms=lr, pan=guide, ratio=4)  # pan-sharpening scenes keep a one-band PAN
    with pytest.raises(InputError, match="task"):
        Scene(lrms=lr, pan=guide[..., :1], ratio=4, task="video")


def test_paris_scenes(data_dir: Path) -> None:
    raw = scipy.io.loadmat(data_dir / "hs" / "paris_hyperion_ali_hs_ms.mat")
    s = hsi.load_paris_hs_ms()
    assert s.lrms.shape == (24, 24, 128) and s.pan.shape == (72, 72, 9) and s.ratio == 3
    q = np.quantile(raw["HSim"].reshape(-1, 128), 0.999, axis=0)
    gt = np.clip(raw["HSim"] / q, 0, 1)
    np.testing.assert_allclose(s.gt, gt, atol=1e-12)
    sm = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
    np.testing.assert_allclose(s.lrms[..., :4], _degrade_np(gt[..., :4], sm, 3, 0, "wrap"), atol=1e-12)
    p = hsi.load_paris_hs_pan()
    assert p.lrms.shape == (72, 58, 128) and p.pan.shape == (216, 174, 1) and p.gt is None
    bands = hsi.paris_bands("hs/paris_hyperion_ali_hs_ms.mat")
    assert bands.shape == (128,) and np.all(np.diff(bands) > 0)
    srf = hsi.box_srf(bands, hsi.ALI_HYPERION_COVERAGE["ms"])
    assert srf.shape == (128, 9) and np.count_nonzero(srf[:, 0]) == 2  # ALI band 1: Hyperion 9-10


def test_hisr_h5_scene_and_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 1, (2, 31, 16, 16)).astype(np.float32)
    lr = rng.uniform(0, 1, (2, 31, 4, 4)).astype(np.float32)
    rgb = rng.uniform(0, 1, (2, 3, 16, 16)).astype(np.float32)
    path = tmp_path / "train_cave.h5"
    with h5py.File(path, "w") as f:
        f["GT"], f["LRHSI"], f["RGB"], f["HSI_up"] = gt, lr, rgb, gt * 0.5
    s = hsi.load_hisr_h5(path, index=1)
    assert s.ratio == 4 and s.task == "mhif"
    np.testing.assert_allclose(s.lrms, lr[1].transpose(1, 2, 0), rtol=1e-6)
    np.testing.assert_allclose(s.pan, rgb[1].transpose(1, 2, 0), rtol=1e-6)
    src = hsi.hisr_source(path)
    batch = src.get_batch([0, 1])
    assert batch["pan"].shape == (2, 16, 16, 3) and batch["lrms"].shape == (2, 4, 4, 31)
    np.testing.assert_allclose(batch["lms"][0], 0.5 * gt[0].transpose(1, 2, 0), rtol=1e-6)


def test_harvard_ref_is_max_normalised(tmp_path: Path) -> None:
    ref = np.random.default_rng(2).uniform(0, 3000, (18, 17, 31))
    path = tmp_path / "imga1.mat"
    scipy.io.savemat(path, {"ref": ref})
    srf = np.random.default_rng(3).uniform(0, 1, (31, 3))
    s = hsi.load_harvard_scene(path, ratio=4, srf=srf)
    np.testing.assert_allclose(s.gt, ref[:16, :16] / ref.max())
    assert s.assumed["crop"] == "18x17 -> 16x16 (top-left)"
    with pytest.raises(InputError, match="norm='max'"):
        hsi.read_hsi(path)


def test_patches_feed_the_arrays_pipeline(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    imgs = [rng.uniform(0, 1, (40, 48, 6)), rng.uniform(0, 1, (33, 32, 6))]
    srf = rng.uniform(0, 1, (6, 3))
    a = hsi.mhif_patches(imgs, srf, ratio=4, patch=16, stride=8)
    n = 4 * 5 + 3 * 3  # (40-16)/8+1 x (48-16)/8+1, then the 32x32 crop: 3 x 3
    assert a["lrms"].shape == (n, 4, 4, 6) and a["pan"].shape == (n, 16, 16, 3) and a["lms"].shape == (n, 16, 16, 6)
    whole = hsi.simulate_mhif(imgs[0], srf, ratio=4)
    np.testing.assert_allclose(a["gt"][7], imgs[0][8:24, 16:32], rtol=1e-6)  # row 1, column 2
    np.testing.assert_allclose(a["lrms"][7], whole.lrms[2:6, 4:8], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a["pan"][7], imgs[0][8:24, 16:32] @ (srf / srf.sum(0)), rtol=1e-5)
    ArraySource(**a, ratio=4)
    np.savez(tmp_path / "train.npz", **a)
    train, val, info = build_sources({"kind": "arrays", "train": str(tmp_path / "train.npz"), "ratio": 4})
    assert len(train) == n and val is None and info.ratio == 4
    with pytest.raises(InputError):
        hsi.mhif_patches(imgs, srf, ratio=4, patch=18, stride=8)

"""Scene I/O: every shared file loads right; v5/v7.3/h5/npz/GeoTIFF; round trips; errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io as sio

from pansharp_jax.data import io as pio
from pansharp_jax.data.io import detect_layout, load_scene, parse_keys, save_fused
from pansharp_jax.errors import InputError

# ---------------------------------------------------------------- shared real files
# file, layout, lrms shape, pan shape, gt shape, sensor, bits, ratio (facts from the data README)
SHARED = [
    ("rr/wv3_cdif.mat", "cdif", (64, 64, 8), (256, 256, 1), (256, 256, 8), "WV3", 11, 4),
    ("rr/gf2_guangzhou.mat", "lrtc", (64, 64, 4), (256, 256, 1), (256, 256, 4), "GF2", 10, 4),
    ("rr/pleiades_cdif.mat", "cdif", (64, 64, 4), (256, 256, 1), (256, 256, 4), "Pleiades", 10, 4),
    ("fr/wv3_zpnn_example.mat", "toolbox", (32, 32, 8), (128, 128, 1), None, "WV3", 11, 4),
    ("fr/wv2_pnn.mat", "pnn", (320, 320, 8), (1280, 1280, 1), None, "WV2", 11, 4),
    ("fr/ikonos_pnn.mat", "pnn", (320, 320, 4), (1280, 1280, 1), None, "IKONOS", 11, 4),
    ("fr/geoeye1_pnn.mat", "pnn", (320, 320, 4), (1280, 1280, 1), None, "GeoEye1", 8, 4),
]
# the README's raw keys for each file: lrms, pan, gt
RAW_KEYS = {
    "rr/wv3_cdif.mat": ("lrms", "pan", "gt"),
    "rr/gf2_guangzhou.mat": ("I_lrms", "I_pan", "Ref_I_gt"),
    "rr/pleiades_cdif.mat": ("lrms", "pan", "gt"),
    "fr/wv3_zpnn_example.mat": ("I_MS_LR", "I_PAN", None),
    "fr/wv2_pnn.mat": ("I_MS", "I_PAN", None),
    "fr/ikonos_pnn.mat": ("I_MS", "I_PAN", None),
    "fr/geoeye1_pnn.mat": ("I_MS", "I_PAN", None),
}
# README scale: DN = stored value x scale for the [0, 1] files; integer files are DN already
README_SCALE = {"rr/wv3_cdif.mat": 2047.0, "rr/gf2_guangzhou.mat": 1023.0, "rr/pleiades_cdif.mat": 1023.0}


@pytest.mark.parametrize("rel,layout,lr,pan,gt,sensor,bits,ratio", SHARED)
def test_shared_files_load(data_dir, rel, layout, lr, pan, gt, sensor, bits, ratio):
    scene = load_scene(data_dir / rel)
    assert detect_layout(data_dir / rel).name == layout
    assert scene.lrms.shape == lr and scene.pan.shape == pan
    assert (scene.gt.shape if scene.gt is not None else None) == gt
    assert (scene.sensor.name, scene.bits, scene.ratio) == (sensor, bits, ratio)
    assert scene.lrms.dtype == np.float64 and scene.name == Path(rel).stem


@pytest.mark.parametrize("rel", [s[0] for s in SHARED])
def test_shared_files_scale(data_dir, rel):
    """Scene DN (value x (2**bits-1)) equals the README's DN of the raw variables."""
    raw = sio.loadmat(data_dir / rel)
    scene = load_scene(data_dir / rel)
    for role, key in zip(("lrms", "pan", "gt"), RAW_KEYS[rel]):
        if key is None:
            continue
        a = raw[key]
        expected_dn = a.astype(np.float64) * README_SCALE[rel] if a.dtype.kind == "f" else a.astype(np.float64)
        got = getattr(scene, role)
        np.testing.assert_allclose(scene.to_dn(got).reshape(expected_dn.shape), expected_dn, rtol=0, atol=1e-9)


def test_shared_geoeye_is_8_bit(data_dir):
    scene = load_scene(data_dir / "fr/geoeye1_pnn.mat")
    raw = sio.loadmat(data_dir / "fr/geoeye1_pnn.mat")["I_MS"]
    assert scene.max_dn == 255.0
    np.testing.assert_array_equal(scene.lrms, raw / 255.0)


def test_shared_v73_copy_equals_v5(data_dir, tmp_path):
    raw = sio.loadmat(data_dir / "fr/wv3_zpnn_example.mat")
    dst = tmp_path / "copy.mat"
    _write_mat73(dst, {"I_MS_LR": raw["I_MS_LR"], "I_PAN": raw["I_PAN"], "sensor": "WV3", "L": np.uint8(11)})
    a, b = load_scene(data_dir / "fr/wv3_zpnn_example.mat"), load_scene(dst)
    np.testing.assert_array_equal(a.lrms, b.lrms)
    np.testing.assert_array_equal(a.pan, b.pan)
    assert (b.sensor.name, b.bits, b.ratio) == ("WV3", 11, 4)


def test_shared_truncated_mat(data_dir, tmp_path):
    data = (data_dir / "rr/wv3_cdif.mat").read_bytes()
    bad = tmp_path / "half.mat"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated MATLAB v5 file"):
        load_scene(bad)


def test_shared_wrong_band_count(data_dir):
    with pytest.raises(InputError, match="wrong band count: sensor WV3 has 8 MS bands, the image has 4"):
        load_scene(data_dir / "fr/ikonos_pnn.mat", sensor="WV3")


# ---------------------------------------------------------------- synthetic helpers
def _arrays(c: int = 4, h: int = 16, w: int = 24, r: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Non-square [0, 1] arrays (a transposition bug changes the shapes)."""
    rng = np.random.default_rng(seed)
    return {
        "lrms": rng.uniform(0.01, 0.99, (h, w, c)),
        "pan": rng.uniform(0.01, 0.99, (r * h, r * w)),
        "gt": rng.uniform(0.01, 0.99, (r * h, r * w, c)),
    }


def _dn(a: np.ndarray, max_dn: float = 2047.0) -> np.ndarray:
    return np.rint(a * max_dn).astype(np.uint16)


def _write_mat73(path: Path, variables: dict) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte text user block,
    column-major arrays stored with reversed axes, ``MATLAB_class`` attributes,
    char arrays as uint16 codes."""
    classes = {"float64": "double", "uint16": "uint16", "uint8": "uint8", "float32": "single"}
    with h5py.File(path, "w", userblock_size=512) as h5:
        for name, v in variables.items():
            if isinstance(v, str):
                d = h5.create_dataset(name, data=np.array([[ord(ch)] for ch in v], np.uint16))
                d.attrs["MATLAB_class"] = np.bytes_("char")
            else:
                a = np.asarray(v)
                a = a.reshape(1, 1) if a.ndim == 0 else a
                d = h5.create_dataset(name, data=a.T)  # reversed axes
                d.attrs["MATLAB_class"] = np.bytes_(classes[a.dtype.name])
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM")


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------- containers and layouts
def test_mat73_equals_mat5(tmp_path):
    x = _arrays(c=8)
    variables = {"I_MS_LR": _dn(x["lrms"]), "I_PAN": _dn(x["pan"]), "I_GT": x["gt"] * 2047.0, "sensor": "WV3"}
    sio.savemat(tmp_path / "v5.mat", variables)
    _write_mat73(tmp_path / "v73.mat", variables)
    a, b = load_scene(tmp_path / "v5.mat"), load_scene(tmp_path / "v73.mat")
    assert b.lrms.shape == (16, 24, 8) and b.pan.shape == (64, 96, 1) and b.gt.shape == (64, 96, 8)
    for role in ("lrms", "pan", "gt"):
        np.testing.assert_array_equal(getattr(a, role), getattr(b, role))
    np.testing.assert_array_equal(b.lrms, _dn(x["lrms"]) / 2047.0)
    np.testing.assert_allclose(b.gt, x["gt"], atol=1e-15)
    assert (a.sensor.name, a.bits) == (b.sensor.name, b.bits) == ("WV3", 11)
    assert detect_layout(tmp_path / "v73.mat").container == "MATLAB v7.3"


def test_pancollection_h5_nchw(tmp_path):
    rng = np.random.default_rng(1)
    n, c, h, w = 3, 8, 16, 24
    gt = rng.uniform(0, 1, (n, c, 4 * h, 4 * w))
    ms = rng.uniform(0, 1, (n, c, h, w))
    pan = rng.uniform(0, 1, (n, 1, 4 * h, 4 * w))
    path = tmp_path / "test_wv3_multiExm1.h5"
    with h5py.File(path, "w") as f:
        f["gt"], f["ms"], f["pan"] = gt * 2047.0, ms * 2047.0, pan * 2047.0
        f["lms"] = np.repeat(np.repeat(ms, 4, axis=2), 4, axis=3) * 2047.0
    scene = load_scene(path, index=1)
    assert (scene.sensor.name, scene.bits, scene.ratio, scene.name) == ("WV3", 11, 4, "test_wv3_multiExm1[1]")
    np.testing.assert_allclose(scene.lrms, ms[1].transpose(1, 2, 0), atol=1e-12)
    np.testing.assert_allclose(scene.pan[..., 0], pan[1, 0], atol=1e-12)
    np.testing.assert_allclose(scene.gt, gt[1].transpose(1, 2, 0), atol=1e-12)
    assert detect_layout(path).name == "panc"
    with pytest.raises(InputError, match="sample index 5 out of range: test_wv3_multiExm1.h5 holds 3 samples"):
        load_scene(path, index=5)


def test_npz_layouts_and_keys(tmp_path):
    x = _arrays()
    p = _npz(tmp_path / "scene.npz", lrms=x["lrms"], pan=x["pan"], gt=x["gt"])
    s = load_scene(p)
    np.testing.assert_array_equal(s.lrms, x["lrms"])
    np.testing.assert_array_equal(s.pan[..., 0], x["pan"])
    assert s.sensor.name == "generic" and s.ratio == 4
    q = _npz(tmp_path / "odd.npz", A=x["lrms"], B=x["pan"])
    s2 = load_scene(q, keys="lrms=A,pan=B")
    np.testing.assert_array_equal(s2.lrms, x["lrms"])
    assert parse_keys("lrms=A, pan=B ,gt=C") == {"lrms": "A", "pan": "B", "gt": "C"}


def test_pnn_i_ms_is_low_res_but_toolbox_i_ms_is_not(tmp_path):
    x = _arrays()
    up = np.repeat(np.repeat(x["lrms"], 4, 0), 4, 1)
    p = _npz(tmp_path / "tb.npz", I_MS=up, I_MS_LR=x["lrms"], I_PAN=x["pan"], I_GT=x["gt"])
    lay = detect_layout(p)
    assert lay.name == "toolbox" and lay.keys == {"lrms": "I_MS_LR", "pan": "I_PAN", "gt": "I_GT"}
    q = _npz(tmp_path / "pnn.npz", I_MS=x["lrms"], I_PAN=x["pan"])
    assert detect_layout(q).keys == {"lrms": "I_MS", "pan": "I_PAN"}
    bad = _npz(tmp_path / "up_only.npz", I_MS=up, I_PAN=x["pan"])
    with pytest.raises(InputError, match="'I_MS' in up_only.npz .* is PAN-sized .* no low-resolution MS"):
        load_scene(bad)


def test_metadata_precedence(tmp_path):
    x = _arrays()
    dn = {"I_MS_LR": _dn(x["lrms"], 1023), "I_PAN": _dn(x["pan"], 1023)}
    # the file's sensor beats the file name; its L beats the sensor's depth; ratio from the file
    sio.savemat(tmp_path / "wv3_named.mat", dict(dn, sensor="IKONOS", L=np.uint8(10), ratio=np.uint8(4)))
    s = load_scene(tmp_path / "wv3_named.mat")
    assert (s.sensor.name, s.bits) == ("IKONOS", 10)
    np.testing.assert_array_equal(s.lrms, _dn(x["lrms"], 1023) / 1023.0)
    # 'none' in the file: the file name decides; arguments beat everything
    sio.savemat(tmp_path / "gf2_x.mat", dict(dn, sensor="none"))
    assert load_scene(tmp_path / "gf2_x.mat").sensor.name == "GF2"
    s = load_scene(tmp_path / "gf2_x.mat", sensor="QB", bits=12)
    assert (s.sensor.name, s.bits) == ("QB", 12)
    np.testing.assert_array_equal(s.pan[..., 0], _dn(x["pan"], 1023) / 4095.0)


def test_float_dn_vs_normalised(tmp_path):
    x = _arrays()
    p = _npz(tmp_path / "dn.npz", lrms=x["lrms"] * 2047.0, pan=x["pan"] * 2047.0)
    np.testing.assert_allclose(load_scene(p).lrms, x["lrms"], atol=1e-15)
    p = _npz(tmp_path / "unit.npz", lrms=x["lrms"], pan=x["pan"])
    np.testing.assert_array_equal(load_scene(p).lrms, x["lrms"])


# ---------------------------------------------------------------- writing
def _scene(tmp_path, c=4, georef=None):
    x = _arrays(c=c)
    return load_scene(_npz(tmp_path / "src.npz", lrms=x["lrms"], pan=x["pan"]), bits=11)


def test_save_npz_and_mat_round_trip(tmp_path):
    scene = _scene(tmp_path)
    fused = np.random.default_rng(3).uniform(-0.05, 1.05, (64, 96, 4))
    save_fused(tmp_path / "out.npz", fused, scene)
    with np.load(tmp_path / "out.npz") as z:
        assert z["fused"].dtype == np.float32 and z["fused"].shape == (64, 96, 4)
        np.testing.assert_array_equal(z["fused"], fused.astype(np.float32))
        assert (str(z["sensor"]), int(z["ratio"]), int(z["bits"])) == ("generic", 4, 11)
    save_fused(tmp_path / "out.mat", fused[None], scene)
    i_f = sio.loadmat(tmp_path / "out.mat")["I_F"]
    assert i_f.dtype == np.float64
    np.testing.assert_array_equal(i_f, fused * 2047.0)  # DN, unclipped, as the toolbox
    assert sorted(os.listdir(tmp_path)) == ["out.mat", "out.npz", "src.npz"]  # no temp files left


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    scene = _scene(tmp_path)
    target = tmp_path / "keep.mat"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sio, "savemat", boom)
    with pytest.raises(RuntimeError):
        save_fused(target, np.zeros((64, 96, 4)), scene)
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["keep.mat", "src.npz"]


def test_save_errors(tmp_path):
    scene = _scene(tmp_path)
    with pytest.raises(InputError, match=r"unsupported output format '\.png': use \.tif, \.mat or \.npz"):
        save_fused(tmp_path / "x.png", np.zeros((64, 96, 4)), scene)
    with pytest.raises(InputError, match=r"fused must be HxWxC with the PAN size \(64, 96\)"):
        save_fused(tmp_path / "x.npz", np.zeros((16, 24, 4)), scene)
    bad = np.zeros((64, 96, 4))
    bad[10, 20, 2] = np.nan
    with pytest.raises(InputError, match="fused contains 1 NaN/Inf values"):
        save_fused(tmp_path / "x.npz", bad, scene)


# ---------------------------------------------------------------- GeoTIFF
def _geotiffs(tmp_path):
    pytest.importorskip("rasterio")
    x = _arrays(c=8)
    ms_geo = {"crs": "EPSG:32633", "transform": (500000.0, 2.0, 0.0, 5000000.0, 0.0, -2.0)}
    pan_geo = {"crs": "EPSG:32633", "transform": (499999.25, 0.5, 0.0, 5000000.75, 0.0, -0.5)}
    pio.write_geotiff(tmp_path / "wv3_ms.tif", _dn(x["lrms"]), ms_geo, np.uint16)
    pio.write_geotiff(tmp_path / "wv3_pan.tif", _dn(x["pan"]), pan_geo, np.uint16)
    return x, ms_geo, pan_geo


def test_geotiff_round_trip_keeps_crs_and_transform(tmp_path):
    x, ms_geo, pan_geo = _geotiffs(tmp_path)  # skips without rasterio
    from rasterio.crs import CRS

    arr, geo = pio.read_geotiff(tmp_path / "wv3_ms.tif")
    assert arr.shape == (16, 24, 8) and arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, _dn(x["lrms"]))
    assert CRS.from_wkt(geo["crs"]).to_epsg() == 32633
    assert geo["transform"] == ms_geo["transform"]

    scene = load_scene(tmp_path / "wv3_ms.tif", pan_path=tmp_path / "wv3_pan.tif")
    assert (scene.sensor.name, scene.bits, scene.ratio) == ("WV3", 11, 4)
    np.testing.assert_array_equal(scene.pan[..., 0], _dn(x["pan"]) / 2047.0)
    assert scene.georef["transform"] == pan_geo["transform"]

    fused = np.random.default_rng(4).uniform(-0.1, 1.1, (64, 96, 8))
    save_fused(tmp_path / "fused.tif", fused, scene)
    out, out_geo = pio.read_geotiff(tmp_path / "fused.tif")
    assert out.dtype == np.uint16 and out.shape == (64, 96, 8)
    expected = np.clip(np.floor(fused * 2047.0 + 0.5), 0, 2047)  # round half up is fine off ties
    np.testing.assert_array_equal(out, expected.astype(np.uint16))
    assert out_geo["transform"] == pan_geo["transform"]  # the PAN's grid, not the MS's
    assert CRS.from_wkt(out_geo["crs"]).to_epsg() == 32633
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def test_geotiff_needs_pan_path(tmp_path):
    _geotiffs(tmp_path)
    with pytest.raises(InputError, match="wv3_ms.tif is a GeoTIFF: pass the PAN GeoTIFF too"):
        load_scene(tmp_path / "wv3_ms.tif")


def test_geotiff_without_rasterio_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)  # import rasterio -> ImportError
    with pytest.raises(InputError, match=r"pip install pansharp_jax\[geo\]"):
        pio.read_geotiff(tmp_path / "any.tif")
    with pytest.raises(InputError, match=r"pip install pansharp_jax\[geo\]"):
        pio.write_geotiff(tmp_path / "any.tif", np.zeros((4, 4)), None)


# ---------------------------------------------------------------- one test per error class
def test_error_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"file not found: .*nope\.mat"):
        load_scene(tmp_path / "nope.mat")


def test_error_truncated_files(tmp_path):
    x = _arrays()
    sio.savemat(tmp_path / "full.mat", {"lrms": x["lrms"], "pan": x["pan"], "gt": x["gt"]})
    data = (tmp_path / "full.mat").read_bytes()
    (tmp_path / "half.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"corrupt or truncated MATLAB v5 file .*half\.mat"):
        load_scene(tmp_path / "half.mat")
    _npz(tmp_path / "full.npz", lrms=x["lrms"], pan=x["pan"])
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "half.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"corrupt or truncated \.npz file"):
        load_scene(tmp_path / "half.npz")
    _write_mat73(tmp_path / "full73.mat", {"I_MS_LR": x["lrms"], "I_PAN": x["pan"]})
    data = (tmp_path / "full73.mat").read_bytes()
    (tmp_path / "half73.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"corrupt or truncated (HDF5|MATLAB v7\.3)"):
        load_scene(tmp_path / "half73.mat")


def test_error_random_bytes(tmp_path):
    p = tmp_path / "noise.mat"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match=r"unrecognised or corrupt file .*noise\.mat: not a MATLAB \.mat"):
        load_scene(p)


def test_error_no_layout_lists_keys(tmp_path):
    x = _arrays()
    p = _npz(tmp_path / "weird.npz", foo=x["lrms"], bar=x["pan"])
    with pytest.raises(InputError) as e:
        load_scene(p)
    msg = str(e.value)
    assert "no recognisable pan-sharpening layout in weird.npz" in msg
    assert "foo 16x24x4" in msg and "bar 64x96" in msg and "--keys lrms=NAME,pan=NAME" in msg
    assert "\n" not in msg


def test_error_named_key_missing(tmp_path):
    x = _arrays()
    p = _npz(tmp_path / "s.npz", lrms=x["lrms"], pan=x["pan"])
    with pytest.raises(InputError, match=r"key 'I_MS_LR' \(for lrms\) not found in s\.npz .*keys found: lrms 16x24x4, pan"):
        load_scene(p, keys={"lrms": "I_MS_LR", "pan": "pan"})
    with pytest.raises(InputError, match="keys must name at least lrms and pan"):
        load_scene(p, keys="lrms=lrms")


def test_error_wrong_band_count(tmp_path):
    x = _arrays(c=4)
    p = _npz(tmp_path / "s.npz", lrms=x["lrms"], pan=x["pan"])
    with pytest.raises(InputError, match="wrong band count: sensor WV3 has 8 MS bands, the image has 4"):
        load_scene(p, sensor="WV3")


def test_error_pan_not_multiple_of_ratio(tmp_path):
    x = _arrays()
    pan = np.pad(x["pan"], ((0, 2), (0, 2)), mode="edge")  # 66 x 98
    p = _npz(tmp_path / "s.npz", lrms=x["lrms"], pan=pan)
    with pytest.raises(InputError, match="PAN size 66x98 is not a multiple of the ratio 4"):
        load_scene(p)


def test_error_shape_mismatch(tmp_path):
    x = _arrays()
    p = _npz(tmp_path / "s.npz", lrms=x["lrms"][:, :20], pan=x["pan"])
    with pytest.raises(InputError, match=r"shape mismatch: LRMS is 16x20, expected PAN size / ratio = 16x24"):
        load_scene(p, ratio=4)


def test_error_nan_inf(tmp_path):
    x = _arrays()
    pan = x["pan"].copy()
    pan[3, 5] = np.nan
    with pytest.raises(InputError, match="pan contains 1 NaN/Inf values"):
        load_scene(_npz(tmp_path / "nan.npz", lrms=x["lrms"], pan=pan))
    lrms = x["lrms"] * 2047.0
    lrms[0, 0, 0] = lrms[1, 1, 1] = np.inf
    with pytest.raises(InputError, match="lrms contains 2 NaN/Inf values"):
        load_scene(_npz(tmp_path / "inf.npz", lrms=lrms, pan=x["pan"] * 2047.0))


def test_error_values_outside_dn_range(tmp_path):
    x = _arrays()
    lrms = _dn(x["lrms"])
    lrms[2, 3, 1] = 3000
    p = _npz(tmp_path / "s.npz", lrms=lrms, pan=_dn(x["pan"]))
    with pytest.raises(InputError, match=r"lrms values outside the sensor's DN range \[0, 2047\]: found \[.*, 3000\] DN \(bits=11\)"):
        load_scene(p)
    assert load_scene(p, bits=12).bits == 12  # a deeper product loads
    # a [0, 1] file that overshoots is not silently read as DN
    q = _npz(tmp_path / "over.npz", lrms=x["lrms"] * 1.2, pan=x["pan"])
    with pytest.raises(InputError, match="lrms values outside the sensor's DN range"):
        load_scene(q)


def test_error_pan_path_with_mat(tmp_path):
    x = _arrays()
    p = _npz(tmp_path / "s.npz", lrms=x["lrms"], pan=x["pan"])
    with pytest.raises(InputError, match="pan_path is only used with GeoTIFF input"):
        load_scene(p, pan_path=tmp_path / "pan.tif")


# ---------------------------------------------------------------- GeoTIFF pair alignment
def _pair(tmp_path, ms_geo, pan_geo, ms_name="ms.tif", pan_name="pan.tif"):
    pytest.importorskip("rasterio")
    x = _arrays(c=4)
    pio.write_geotiff(tmp_path / ms_name, _dn(x["lrms"]), ms_geo, np.uint16)
    pio.write_geotiff(tmp_path / pan_name, _dn(x["pan"]), pan_geo, np.uint16)
    return tmp_path / ms_name, tmp_path / pan_name


# MS 16x24 pixels of 2 m and PAN 64x96 of 0.5 m from the same corner: both 48 m x 32 m
_MS_GEO = {"crs": "EPSG:32633", "transform": (500000.0, 2.0, 0.0, 5000000.0, 0.0, -2.0)}


def _pan_geo(dx=0.0, dy=0.0, crs="EPSG:32633", px=0.5):
    return {"crs": crs, "transform": (500000.0 + dx, px, 0.0, 5000000.0 + dy, 0.0, -px)}


def test_geotiff_pan_shifted_10_km_is_refused(tmp_path):
    ms, pan = _pair(tmp_path, _MS_GEO, _pan_geo(dx=10000.0))
    with pytest.raises(InputError) as e:
        load_scene(ms, pan_path=pan)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("MS and PAN GeoTIFFs do not overlap: ms.tif covers x [500000, 500048]")
    assert "pan.tif covers x [510000, 510048]" in msg


@pytest.mark.parametrize(
    "shift, px, ok, moved",
    [
        ((0.0, 0.0), 0.5, True, None),
        ((1.5, 0.0), 0.5, True, None),  # under one MS pixel (2 m): the toolbox's half-pixel offsets pass
        ((0.0, -2.0), 0.5, True, None),  # exactly one MS pixel
        ((2.5, 0.0), 0.5, False, ("2.5", "0")),
        ((0.0, 7.0), 0.5, False, ("0", "7")),
        ((0.0, 0.0), 0.55, False, ("4.8", "3.2")),  # PAN grid 10% coarser: far edges 4.8 m / 3.2 m off
    ],
)
def test_geotiff_extents_must_agree_within_one_ms_pixel(tmp_path, shift, px, ok, moved):
    ms, pan = _pair(tmp_path, _MS_GEO, _pan_geo(*shift, px=px))
    if ok:
        assert load_scene(ms, pan_path=pan).pan.shape == (64, 96, 1)
        return
    with pytest.raises(InputError) as e:
        load_scene(ms, pan_path=pan)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("MS and PAN GeoTIFF extents differ by more than one MS pixel (2 x 2): ms.tif vs pan.tif")
    assert f"differ by up to {moved[0]} in x and {moved[1]} in y (map units)" in msg


def test_geotiff_different_crs_is_refused(tmp_path):
    ms, pan = _pair(tmp_path, _MS_GEO, _pan_geo(crs="EPSG:32632"))
    with pytest.raises(InputError, match="MS and PAN GeoTIFFs have different CRS: ms.tif vs pan.tif"):
        load_scene(ms, pan_path=pan)


def test_geotiff_pair_without_georeference_loads(tmp_path):
    ms, pan = _pair(tmp_path, None, None)
    scene = load_scene(ms, pan_path=pan)
    assert scene.ratio == 4 and scene.georef["crs"] is None


def test_check_pair_alignment_bounds_by_hand():
    from pansharp_jax.data.io_geotiff import check_pair_alignment, pixel_bounds

    # rotated grids: corners computed by hand from x = x0 + c*a + r*b, y = y0 + c*d + r*e
    assert pixel_bounds((10.0, 1.0, 0.5, 20.0, 0.25, -2.0), (4, 8)) == (10.0, 12.0, 20.0, 22.0)
    assert pixel_bounds((0.0, 3.0, 0.0, 0.0, 0.0, 3.0), (2, 5)) == (0.0, 0.0, 15.0, 6.0)  # south-up
    ms = {"crs": None, "transform": (0.0, 4.0, 0.0, 0.0, 0.0, -4.0)}  # 10x10 px -> x [0, 40], y [-40, 0]

    def pan_at(x0):  # 40x40 px of 1 m from (x0, 0)
        return {"crs": None, "transform": (x0, 1.0, 0.0, 0.0, 0.0, -1.0)}

    check_pair_alignment("m", ms, (10, 10), "p", pan_at(3.9), (40, 40))
    with pytest.raises(InputError, match=r"differ by up to 4\.1 in x and 0 in y"):
        check_pair_alignment("m", ms, (10, 10), "p", pan_at(4.1), (40, 40))
    with pytest.raises(InputError, match="do not overlap"):  # touching edges only: no common area
        check_pair_alignment("m", ms, (10, 10), "p", pan_at(40.0), (40, 40))
    # missing parts skip their checks: no georef, GDAL's identity for ungeoreferenced files
    check_pair_alignment("m", None, (10, 10), "p", pan_at(1e6), (40, 40))
    check_pair_alignment("m", ms, (10, 10), "p", {"crs": None, "transform": (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, (3, 3))
    check_pair_alignment("m", {"crs": "EPSG:4326"}, (10, 10), "p", {"crs": None}, (40, 40))


# ---------------------------------------------------------------- assumed values
def test_geotiff_records_assumed_sensor_and_bits(tmp_path):
    ms, pan = _pair(tmp_path, _MS_GEO, _pan_geo(), "scene_ms.tif", "scene_pan.tif")
    scene = load_scene(ms, pan_path=pan)
    assert scene.assumed == {
        "sensor": "generic (no sensor given, none in the file or its name)",
        "bits": "11 (the sensor's default)",
    }
    assert load_scene(ms, pan_path=pan, sensor="QB", bits=11).assumed == {}
    assert load_scene(ms, pan_path=pan, sensor="QB").assumed == {"bits": "11 (the sensor's default)"}
    named, pan_named = _pair(tmp_path, _MS_GEO, _pan_geo(), "ikonos_ms.tif", "ikonos_pan.tif")
    assert load_scene(named, pan_path=pan_named).assumed["sensor"] == (
        "IKONOS (guessed from the file name ikonos_ms.tif, ikonos_pan.tif)"
    )


def test_array_files_record_only_what_was_guessed(tmp_path):
    x = _arrays()
    dn = {"I_MS_LR": _dn(x["lrms"], 1023), "I_PAN": _dn(x["pan"], 1023)}
    sio.savemat(tmp_path / "given.mat", dict(dn, sensor="IKONOS", L=np.uint8(10), ratio=np.uint8(4)))
    assert load_scene(tmp_path / "given.mat").assumed == {}  # all read from the file
    sio.savemat(tmp_path / "bare.mat", dn)
    assert load_scene(tmp_path / "bare.mat").assumed == {
        "sensor": "generic (no sensor given, none in the file or its name)",
        "bits": "11 (the sensor's default)",
    }
    sio.savemat(tmp_path / "odd.mat", dict(dn, sensor="Sentinel-9"))
    assert load_scene(tmp_path / "odd.mat").assumed["sensor"] == (
        "generic (the file's sensor 'Sentinel-9' is unknown, none in its name)"
    )
    p = _npz(tmp_path / "u8.npz", lrms=_dn(x["lrms"], 255).astype(np.uint8), pan=_dn(x["pan"], 255).astype(np.uint8))
    assert load_scene(p, sensor="QB").assumed == {"bits": "8 (the data are uint8)"}
    q = _npz(tmp_path / "unit.npz", lrms=x["lrms"], pan=x["pan"])
    assert load_scene(q, sensor="Pleiades").assumed == {
        "bits": "10 (the scale of the [0, 1]-normalised public datasets for sensor Pleiades)"
    }
    assert load_scene(q, sensor="Pleiades", bits=12).assumed == {}


def test_scene_assumed_defaults_empty():
    from pansharp_jax.data.scene import Scene

    x = _arrays()
    assert Scene(x["lrms"], x["pan"]).assumed == {}


def test_public_resolvers_match_private_ones(tmp_path):
    from pansharp_jax.data.sensors import get_sensor

    wv3 = get_sensor("WV3")
    paths = (tmp_path / "wv3_x.mat",)
    assert pio.resolve_sensor(None, "none", paths) == (wv3, "WV3 (guessed from the file name wv3_x.mat)")
    assert pio._resolve_sensor(None, "none", paths) is wv3
    assert pio.resolve_bits(None, 12, wv3, []) == (12, None)
    assert pio._resolve_bits(None, None, wv3, [np.zeros((2, 2), np.uint16)]) == 11
    assert pio.resolve_ratio(None, None, (16, 24), (64, 96), wv3) == (4, None)
    assert pio.resolve_ratio(None, None, (16, 24), (64, 90), wv3)[1].startswith("4 (the sensor's default")
    assert pio._resolve_ratio(3, None, (16, 24), (64, 96), wv3) == 3
    with pytest.raises(InputError, match="bits must be an integer in \\[1, 32\\], got nan"):
        pio.resolve_bits(None, float("nan"), wv3, [])


# ---------------------------------------------------------------- find_input
def test_find_input(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "rr").mkdir(parents=True)
    (data / "rr" / "s.mat").write_bytes(b"x")
    here = tmp_path / "here"
    here.mkdir()
    (here / "local.mat").write_bytes(b"y")
    monkeypatch.chdir(here)
    monkeypatch.setenv("PANSHARP_DATA", str(data))
    assert pio.find_input("local.mat") == Path("local.mat")  # as given when it exists
    assert pio.find_input(Path("rr") / "s.mat") == data / "rr" / "s.mat"
    (here / "rr").mkdir()
    (here / "rr" / "s.mat").write_bytes(b"z")
    assert pio.find_input("rr/s.mat") == Path("rr/s.mat")  # the working directory wins
    with pytest.raises(InputError) as e:
        pio.find_input("rr/none.mat")
    assert str(e.value) == f"file not found: {Path('rr/none.mat')} (also looked in $PANSHARP_DATA)"
    assert str(data) not in str(e.value)
    with pytest.raises(InputError, match=r"^file not found: .*abs\.mat$"):
        pio.find_input(tmp_path / "abs.mat")  # absolute: not looked up in the data folder
    monkeypatch.setenv("MY_DATA", str(data / "rr"))
    assert pio.find_input("s.mat", env="MY_DATA") == data / "rr" / "s.mat"
    monkeypatch.delenv("PANSHARP_DATA")
    with pytest.raises(InputError, match=r"file not found: x\.mat \(\$PANSHARP_DATA is not set\)"):
        pio.find_input("x.mat")


# ---------------------------------------------------------------- no partial outputs
def test_save_npz_failing_mid_write_leaves_nothing(tmp_path, monkeypatch):
    scene = _scene(tmp_path)

    def half_then_fail(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_fused(tmp_path / "out.npz", np.zeros((64, 96, 4)), scene)
    assert sorted(os.listdir(tmp_path)) == ["src.npz"]


def test_save_geotiff_failing_mid_write_leaves_nothing(tmp_path, monkeypatch):
    rasterio = pytest.importorskip("rasterio")
    scene = _scene(tmp_path)
    real_open = rasterio.open

    class _Failing:
        def __init__(self, ds):
            self.ds = ds

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.ds.close()
            return False

        def write(self, arr):
            self.ds.write(arr[:1], indexes=[1])  # one band on disk, then the failure
            raise OSError("disk full")

    def failing_open(path, mode="r", **kw):
        ds = real_open(path, mode, **kw)
        return _Failing(ds) if mode == "w" else ds

    monkeypatch.setattr(rasterio, "open", failing_open)
    with pytest.raises(OSError, match="disk full"):
        save_fused(tmp_path / "out.tif", np.zeros((64, 96, 4)), scene)
    assert sorted(os.listdir(tmp_path)) == ["src.npz"]


def test_scene_refuses_empty_and_non_real_arrays():
    from pansharp_jax.data.scene import Scene

    x = _arrays()
    with pytest.raises(InputError, match="lrms is empty \\(shape 0x24x4\\)"):
        Scene(x["lrms"][:0], x["pan"])
    with pytest.raises(InputError, match="pan has unsupported data type complex128"):
        Scene(x["lrms"], x["pan"] + 0j)


def test_explicit_key_to_a_non_image_variable_says_why(tmp_path):
    x = _arrays()
    p = _npz(tmp_path / "s.npz", lrms=x["lrms"] + 1j, pan=x["pan"])
    msg = r"variable 'lrms' \(for lrms\) in s\.npz \(NPZ\) is not a real-valued image .*stored type complex128"
    with pytest.raises(InputError, match=msg):
        load_scene(p, keys="lrms=lrms,pan=pan")
    q = _npz(tmp_path / "b.npz", lrms=x["lrms"] > 0.5, pan=x["pan"])
    with pytest.raises(InputError, match=r"lrms in b\.npz has data type bool: expected integer or float image data"):
        load_scene(q)


def test_npz_reader_equals_numpy_load(tmp_path):
    """The guarded .npy parser reads what np.load reads: C and Fortran order, float16, v3 headers."""
    x = _arrays()
    p = tmp_path / "mixed.npz"
    meta = np.array([("é", 1)], dtype=[("é", "U1"), ("n", "i4")])  # forces a version 3.0 member
    np.savez(p, lrms=np.asfortranarray(x["lrms"]), pan=x["pan"].astype(np.float16), gt=x["gt"], meta=meta)
    scene = load_scene(p, bits=11)
    with np.load(p) as z:
        np.testing.assert_array_equal(scene.lrms, z["lrms"])
        np.testing.assert_array_equal(scene.pan[..., 0], z["pan"].astype(np.float64))
        np.testing.assert_array_equal(scene.gt, z["gt"])

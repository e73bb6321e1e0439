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

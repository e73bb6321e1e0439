"""Windowed GeoTIFF pair reading and COG writing (pansharp_jax.products.geotiff).

Synthetic pairs are written with rasterio directly (not with the code under test) and
every expected value is computed here from the arrays that were written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402  (installed with rasterio)
from rasterio.crs import CRS  # noqa: E402

from pansharp_jax.data.sensors import get_sensor  # noqa: E402
from pansharp_jax.errors import InputError  # noqa: E402
from pansharp_jax.products import geotiff as pg  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # test files

H, W, C, R = 600, 704, 4, 4
ORIGIN = (500000.0, 4650000.0)
PAN_GEO = {"crs": "EPSG:32633", "transform": (ORIGIN[0], 0.5, 0.0, ORIGIN[1], 0.0, -0.5)}


def _write_tif(path: Path, a: np.ndarray, pixel: float | None, nodata=None, crs: str = "EPSG:32633") -> None:
    """Write (h, w, c) ``a`` as a tiled GeoTIFF with rasterio (independent of the code under test)."""
    profile = {
        "driver": "GTiff", "height": a.shape[0], "width": a.shape[1], "count": a.shape[2],
        "dtype": a.dtype.name, "tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "deflate",
    }  # fmt: skip
    if pixel is not None:
        profile["crs"] = crs
        profile["transform"] = Affine(pixel, 0.0, ORIGIN[0], 0.0, -pixel, ORIGIN[1])
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(a, -1, 0))


def _pair(tmp_path: Path, pan=None, ms=None, *, dtype=np.uint16, nodata=None, stem="qb_scene", georef=True):
    """Write a QB-named pair (PAN 600x704, MS 150x176x4, 11-bit DN); return (ms_path, pan_path, ms, pan)."""
    rng = np.random.default_rng(0)
    if pan is None:
        pan = rng.integers(1, 2048, (H, W, 1)).astype(dtype)
    if ms is None:
        ms = rng.integers(1, 2048, (H // R, W // R, C)).astype(dtype)
    ms_path, pan_path = tmp_path / f"{stem}_ms.tif", tmp_path / f"{stem}_pan.tif"
    _write_tif(pan_path, pan, 0.5 if georef else None, nodata)
    _write_tif(ms_path, ms, 2.0 if georef else None, nodata)
    return ms_path, pan_path, ms, pan


def _read_all(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.moveaxis(src.read(), 0, -1)


# -- GeoTiffPair ------------------------------------------------------------------------


def test_pair_metadata(tmp_path):
    ms_path, pan_path, _, _ = _pair(tmp_path)
    with pg.GeoTiffPair.open(ms_path, pan_path) as pair:
        assert (pair.height, pair.width, pair.ms_height, pair.ms_width) == (H, W, H // R, W // R)
        assert pair.ratio == R and pair.nbands == C and pair.dtype == np.uint16
        assert pair.sensor.name == "QB" and pair.bits == 11 and pair.max_dn == 2047.0
        assert pair.name == "qb_scene_ms" and pair.ms_path == ms_path and pair.pan_path == pan_path
        assert CRS.from_wkt(pair.georef["crs"]) == CRS.from_epsg(32633)
        assert pair.georef["transform"] == PAN_GEO["transform"] and pair.georef["nodata"] is None
    with pg.GeoTiffPair.open(ms_path, pan_path, sensor="generic", bits=12) as pair:
        assert pair.sensor.name == "generic" and pair.max_dn == 4095.0


def test_windowed_reads_equal_full_reads(tmp_path):
    ms_path, pan_path, ms, pan = _pair(tmp_path)
    pan_u, ms_u = pan.astype(np.float64) / 2047, ms.astype(np.float64) / 2047
    with pg.GeoTiffPair.open(ms_path, pan_path) as pair:
        for r0, r1, c0, c1 in [(0, H, 0, W), (0, 37, 0, 53), (100, 357, 250, 513), (H - 1, H, W - 1, W)]:
            got = pair.read_pan(r0, r1, c0, c1)
            assert got.shape == (r1 - r0, c1 - c0, 1) and got.dtype == np.float64
            np.testing.assert_array_equal(got, pan_u[r0:r1, c0:c1])
        for r0, r1, c0, c1 in [(0, 10, 0, 10), (31, 150, 97, 176)]:
            np.testing.assert_array_equal(pair.read_lrms(r0, r1, c0, c1), ms_u[r0:r1, c0:c1])
        np.testing.assert_array_equal(pair.read_lrms_all(), ms_u)


@pytest.mark.parametrize("window", [(-1, 10, 0, 10), (0, H + 1, 0, 10), (5, 5, 0, 10), (0, 10, 20, 10), (0, 10.0, 0, 10)])
def test_window_outside_raises(tmp_path, window):
    ms_path, pan_path, _, _ = _pair(tmp_path)
    with pg.GeoTiffPair.open(ms_path, pan_path) as pair:
        with pytest.raises(InputError, match="window"):
            pair.read_pan(*window)
        with pytest.raises(InputError, match="MS window"):
            pair.read_lrms(0, H // R + 1, 0, 4)


def test_values_above_max_dn_raise_naming_the_window(tmp_path):
    pan = np.full((H, W, 1), 1000, np.uint16)
    pan[300, 400] = 3000  # above 2047 (11 bits)
    ms_path, pan_path, _, _ = _pair(tmp_path, pan=pan)
    with pg.GeoTiffPair.open(ms_path, pan_path) as pair:
        with pytest.raises(InputError, match=r"PAN .*rows 256:512, cols 384:512.*3000"):
            pair.read_pan(256, 512, 384, 512)
        np.testing.assert_array_equal(pair.read_pan(0, 256, 0, W), np.full((256, W, 1), 1000 / 2047))


def test_float_files_normalised_or_dn_and_nan(tmp_path):
    rng = np.random.default_rng(1)
    pan = rng.uniform(0, 1, (H, W, 1)).astype(np.float32)
    ms = rng.uniform(0, 1, (H // R, W // R, C)).astype(np.float32)
    ms_path, pan_path, _, _ = _pair(tmp_path, pan=pan, ms=ms)
    with pg.GeoTiffPair.open(ms_path, pan_path) as pair:  # on [0, 1]: kept as is
        assert pair.pan_normalised and pair.ms_normalised
        np.testing.assert_array_equal(pair.read_pan(10, 20, 30, 40), pan[10:20, 30:40].astype(np.float64))
    d = tmp_path / "dn"
    d.mkdir()
    pan_dn = (pan * 2047).astype(np.float32)
    pan_dn[500, 600] = np.nan
    ms_path, pan_path, _, _ = _pair(d, pan=pan_dn, ms=(ms * 2047).astype(np.float32))
    with pg.GeoTiffPair.open(ms_path, pan_path) as pair:  # float DN: divided by 2**11 - 1
        assert not pair.pan_normalised
        np.testing.assert_allclose(pair.read_pan(0, 8, 0, 8), pan_dn[:8, :8].astype(np.float64) / 2047)
        with pytest.raises(InputError, match=r"rows 496:504, cols 600:608 contains 1 NaN"):
            pair.read_pan(496, 504, 600, 608)


def test_nodata_mask_from_zeros(tmp_path):
    rng = np.random.default_rng(2)
    ms = rng.integers(1, 2048, (H // R, W // R, C)).astype(np.uint16)
    pan = rng.integers(1, 2048, (H, W, 1)).astype(np.uint16)
    ms[:10], ms[:, -7:] = 0, 0  # MS nodata frame on top and right
    pan[: 10 * R], pan[:, -7 * R :] = 0, 0
    pan[200:210, 100:110] = 0  # PAN zeros where the MS is valid: data, not nodata
    ms[60, 60, :3] = 0  # one MS pixel with a non-zero band: not nodata
    pan[240:244, 240:244] = 0
    ms_path, pan_path, _, _ = _pair(tmp_path, pan=pan, ms=ms)
    expected = (pan[..., 0] == 0) & np.kron((ms == 0).all(-1), np.ones((R, R), bool)).astype(bool)
    assert expected.sum() == 10 * R * W + 7 * R * (H - 10 * R)
    with pg.GeoTiffPair.open(ms_path, pan_path) as pair:
        for r0, r1, c0, c1 in [(0, H, 0, W), (37, 45, 601, 703), (195, 250, 99, 301), (1, 2, 3, 4)]:
            np.testing.assert_array_equal(pair.nodata_mask(r0, r1, c0, c1), expected[r0:r1, c0:c1])


def test_nodata_value_is_masked_and_read_as_zero(tmp_path):
    rng = np.random.default_rng(3)
    pan = rng.integers(0, 2048, (H, W, 1)).astype(np.uint16)
    ms = rng.integers(0, 2048, (H // R, W // R, C)).astype(np.uint16)
    pan[:8], ms[:2] = 65535, 65535  # nodata value above max DN: must not raise
    ms_path, pan_path, _, _ = _pair(tmp_path, pan=pan, ms=ms, nodata=65535)
    with pg.GeoTiffPair.open(ms_path, pan_path) as pair:
        assert pair.georef["nodata"] == 65535
        np.testing.assert_array_equal(pair.nodata_mask(0, 16, 0, W), pan[:16, :, 0] == 65535)
        expected = np.where(pan[:16] == 65535, 0, pan[:16]) / 2047
        np.testing.assert_array_equal(pair.read_pan(0, 16, 0, W), expected)
        np.testing.assert_array_equal(pair.read_lrms(0, 4, 0, 10), np.where(ms[:4, :10] == 65535, 0, ms[:4, :10]) / 2047)


def test_pair_refusals(tmp_path):
    rng = np.random.default_rng(4)
    # sizes that are not one integer ratio (ungeoreferenced, so only the ratio check applies)
    ms_path, pan_path, _, _ = _pair(tmp_path, ms=rng.integers(1, 2048, (150, 170, C)).astype(np.uint16), georef=False)
    with pytest.raises(InputError, match="integer ratio"):
        pg.GeoTiffPair.open(ms_path, pan_path)
    d = tmp_path / "b"
    d.mkdir()
    ms_path, pan_path, _, _ = _pair(d, pan=rng.integers(1, 2048, (H, W, 2)).astype(np.uint16))
    with pytest.raises(InputError, match="one band"):
        pg.GeoTiffPair.open(ms_path, pan_path)
    with pytest.raises(InputError, match="not found"):
        pg.GeoTiffPair.open(tmp_path / "missing_ms.tif", pan_path)
    # a PAN in another CRS: the shared alignment check refuses it
    d = tmp_path / "c"
    d.mkdir()
    ms_path, pan_path, ms, pan = _pair(d)
    _write_tif(pan_path, pan, 0.5, crs="EPSG:32632")
    with pytest.raises(InputError, match="CRS"):
        pg.GeoTiffPair.open(ms_path, pan_path)
    # 4 bands named as WV3 (8 bands)
    d = tmp_path / "e"
    d.mkdir()
    ms_path, pan_path, _, _ = _pair(d, stem="wv3_scene")
    with pytest.raises(InputError, match="band count"):
        pg.GeoTiffPair.open(ms_path, pan_path)


# -- COG writing ------------------------------------------------------------------------


def _product(seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2048, (H, W, C)).astype(np.uint16)


def test_cog_writer_round_trip_and_structure(tmp_path):
    a = _product()
    out = tmp_path / "fused.tif"
    desc = ["blue", "green", "red", "nir"]
    with pg.CogWriter(
        out, height=H, width=W, bands=C, dtype="uint16", georef=PAN_GEO, band_descriptions=desc,
        tags={"method": "test", "bits": 11}, blocksize=128,
    ) as w:  # fmt: skip
        for r0 in range(0, H, 96):  # windows not aligned with the tiles
            for c0 in range(0, W, 250):
                w.write(r0, c0, a[r0 : r0 + 96, c0 : c0 + 250])
    assert sorted(os.listdir(tmp_path)) == ["fused.tif"]
    np.testing.assert_array_equal(_read_all(out), a)
    assert pg.is_cog(out)
    rep = pg.cog_report(out)
    assert rep["layout"] == "COG" and rep["tiled"] and rep["block_shape"] == (128, 128)
    assert rep["overview_factors"] == [2, 4, 8]  # 600 -> 300 -> 150 -> 75 < 128
    assert rep["compression"] == "DEFLATE" and rep["dtype"] == "uint16"
    assert CRS.from_wkt(rep["crs"]) == CRS.from_epsg(32633)
    assert rep["transform"] == PAN_GEO["transform"]
    assert rep["band_descriptions"] == desc
    assert rep["tags"]["method"] == "test" and rep["tags"]["bits"] == "11"
    # the first overview is the 2x2 average (GDAL rounds to the nearest DN)
    with rasterio.open(out, overview_level=0) as src:
        ov = np.moveaxis(src.read(), 0, -1).astype(np.float64)
    mean2 = a.astype(np.float64).reshape(H // 2, 2, W // 2, 2, C).mean(axis=(1, 3))
    assert ov.shape == mean2.shape and np.abs(ov - mean2).max() <= 0.5 + 1e-9


def test_non_cog_is_reported(tmp_path):
    p = tmp_path / "strip.tif"
    with rasterio.open(p, "w", driver="GTiff", height=300, width=200, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 300, 200), np.uint8))
    rep = pg.cog_report(p)
    assert not rep["tiled"] and rep["layout"] is None and not pg.is_cog(p)


def test_write_fused_cog_dn_rounding_and_clipping(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.uniform(-0.1, 1.1, (130, 150, 3))
    x[0, 0] = [0.4 / 2047, 1.6 / 2047, 2047.4 / 2047]  # rounding at both ends
    out = pg.write_fused_cog(tmp_path / "p.tif", x, georef=PAN_GEO, bits=11, blocksize=32,
                             band_descriptions=pg.band_descriptions(None, 3))  # fmt: skip
    got = _read_all(out)
    assert got.dtype == np.uint16 and got.shape == x.shape
    expected = np.minimum(np.maximum(np.floor(x * 2047 + 0.5), 0), 2047)  # round half up (no exact halves here)
    np.testing.assert_array_equal(got, expected)
    assert list(got[0, 0]) == [0, 2, 2047]
    assert pg.is_cog(out) and pg.cog_report(out)["band_descriptions"] == ["band 1", "band 2", "band 3"]
    out32 = pg.write_fused_cog(tmp_path / "p32.tif", x[:20, :20], georef=None, bits=20, blocksize=16)
    assert _read_all(out32).dtype == np.uint32 and _read_all(out32).max() <= 2**20 - 1
    with pytest.raises(InputError, match="NaN"):
        pg.write_fused_cog(tmp_path / "n.tif", np.full((4, 4, 1), np.nan), georef=None, bits=11)
    assert not (tmp_path / "n.tif").exists()


def test_band_descriptions():
    assert pg.band_descriptions("WV3", 8) == list(get_sensor("WV3").band_names)
    assert pg.band_descriptions("QB", 4) == ["blue", "green", "red", "nir"]
    assert pg.band_descriptions("QB", 3) == ["band 1", "band 2", "band 3"]
    assert pg.band_descriptions(None, 2) == ["band 1", "band 2"]


def test_overview_factors():
    assert pg.overview_factors(600, 704, 128) == [2, 4, 8]
    assert pg.overview_factors(4096, 4096, 512) == [2, 4, 8, 16]
    assert pg.overview_factors(100, 5000, 128) == []


def test_writer_refuses_bad_windows_and_values(tmp_path):
    with pg.CogWriter(tmp_path / "x.tif", height=40, width=40, bands=2, dtype="uint16", georef=None, blocksize=16) as w:
        with pytest.raises(InputError, match="not inside"):
            w.write(30, 0, np.zeros((20, 5, 2), np.uint16))
        with pytest.raises(InputError, match=r"\(h, w, 2\)"):
            w.write(0, 0, np.zeros((5, 5, 3), np.uint16))
        with pytest.raises(InputError, match="whole numbers"):
            w.write(0, 0, np.full((5, 5, 2), 0.5))
        with pytest.raises(InputError, match="do not fit"):
            w.write(0, 0, np.full((5, 5, 2), 70000, np.int64))
        w.write(0, 0, np.full((40, 40, 2), 7.0))  # whole numbers in range are fine
    assert (_read_all(tmp_path / "x.tif") == 7).all()
    with pytest.raises(InputError, match="blocksize"):
        pg.CogWriter(tmp_path / "y.tif", height=4, width=4, bands=1, dtype="uint16", georef=None, blocksize=100)
    with pytest.raises(InputError, match="band descriptions"):
        pg.CogWriter(tmp_path / "y.tif", height=4, width=4, bands=2, dtype="uint16", georef=None, band_descriptions=["a"])
    with pytest.raises(InputError, match="CRS"):
        pg.CogWriter(tmp_path / "y.tif", height=4, width=4, bands=1, dtype="uint16", georef={"crs": "EPSG:nope"})


def test_exception_inside_with_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with pg.CogWriter(tmp_path / "f.tif", height=H, width=W, bands=C, dtype="uint16", georef=PAN_GEO, blocksize=128) as w:
            w.write(0, 0, _product()[:200])
            assert any(n.startswith(".f.tif.") for n in os.listdir(tmp_path))  # the temporary exists meanwhile
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_product_has_normal_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    out = pg.write_fused_cog(tmp_path / "m.tif", np.zeros((20, 20, 1)), georef=None, bits=11, blocksize=16)
    mode = os.stat(out).st_mode & 0o777
    assert mode != 0o600 and mode == 0o666 & ~umask


# -- output paths ------------------------------------------------------------------------


def test_check_output_path(tmp_path):
    ok = tmp_path / "new.tif"
    assert pg.check_output_path(ok, overwrite=False) == ok
    existing = tmp_path / "old.tif"
    existing.write_bytes(b"x")
    with pytest.raises(InputError, match="exists: pass --overwrite"):
        pg.check_output_path(existing, overwrite=False)
    assert pg.check_output_path(existing, overwrite=True) == existing
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match="never writes over an input"):
        pg.check_output_path(tmp_path / "sub" / ".." / "old.tif", overwrite=True, inputs=[existing])
    with pytest.raises(InputError, match="never writes over an input"):  # neither exists: same resolved path
        pg.check_output_path(tmp_path / "a.tif", overwrite=True, inputs=[tmp_path / "." / "a.tif"])
    with pytest.raises(InputError, match="is a file"):
        pg.check_output_path(existing / "x.tif", overwrite=True)
    with pytest.raises(InputError, match="is a file"):
        pg.check_output_path(existing / "deeper" / "x.tif", overwrite=True)
    with pytest.raises(InputError, match="does not exist: create it first"):
        pg.check_output_path(tmp_path / "nope" / "x.tif", overwrite=True)
    assert not (tmp_path / "nope").exists()
    with pytest.raises(InputError, match="is a directory"):
        pg.check_output_path(tmp_path, overwrite=True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write to read-only folders")
def test_check_output_path_unwritable_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InputError, match="not writable"):
            pg.check_output_path(ro / "x.tif", overwrite=False)
    finally:
        ro.chmod(0o755)


def test_cog_writer_refuses_before_writing(tmp_path):
    ms_path, pan_path, _, _ = _pair(tmp_path)
    before = sorted(os.listdir(tmp_path))
    kw = dict(height=H, width=W, bands=C, dtype="uint16", georef=PAN_GEO, blocksize=128)
    with pytest.raises(InputError, match="exists"):
        with pg.CogWriter(ms_path, **kw):
            pass
    with pytest.raises(InputError, match="never writes over an input"):
        with pg.CogWriter(pan_path, overwrite=True, inputs=[ms_path, pan_path], **kw):
            pass
    assert sorted(os.listdir(tmp_path)) == before
    a = _product()
    with pg.CogWriter(tmp_path / "o.tif", **kw) as w:
        w.write(0, 0, a)
    with pg.CogWriter(tmp_path / "o.tif", overwrite=True, **kw) as w:
        w.write(0, 0, a[::-1])
    np.testing.assert_array_equal(_read_all(tmp_path / "o.tif"), a[::-1])


# -- memory ------------------------------------------------------------------------------

_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from pansharp_jax.products.geotiff import CogWriter, cog_report
    n, c, step = 4096, 4, 256
    geo = {"crs": "EPSG:32633", "transform": (500000.0, 0.5, 0.0, 4650000.0, 0.0, -0.5)}
    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    # warm up GDAL (drivers, first dataset) so the baseline includes its fixed cost
    with CogWriter(sys.argv[1] + "/warm.tif", height=64, width=64, bands=c, dtype="uint16", georef=geo, blocksize=16) as w:
        w.write(0, 0, np.ones((64, 64, c), np.uint16))
    base = rss_mb()
    rows = np.arange(step, dtype=np.uint16)[:, None, None]
    with CogWriter(sys.argv[1] + "/big.tif", height=n, width=n, bands=c, dtype="uint16", georef=geo, num_threads=2) as w:
        for r0 in range(0, n, step):
            for c0 in range(0, n, 1024):
                w.write(r0, c0, np.broadcast_to((rows * 7 + r0 + c0) % 2048, (step, 1024, c)))
    rep = cog_report(sys.argv[1] + "/big.tif")
    print(json.dumps({"growth_mb": rss_mb() - base, "overviews": rep["overview_factors"], "layout": rep["layout"]}))
    """
)


def test_cog_writer_memory_is_bounded(tmp_path):
    # A 4096 x 4096 x 4 uint16 product is 128 MiB. Peak growth = GDAL's block cache (bounded
    # here to 64 MiB) + overview buffers (~40-70 MiB) + one window; holding the image whole
    # as well would pass 200 MiB.
    env = dict(os.environ, GDAL_CACHEMAX="64", JAX_PLATFORMS="cpu")
    res = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["layout"] == "COG" and out["overviews"] == [2, 4, 8, 16]
    assert out["growth_mb"] < 200, out


# -- acceptance scenes ---------------------------------------------------------------------


def _make_large_scene():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "make_large_scene.py"
    spec = importlib.util.spec_from_file_location("make_large_scene", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mirror_index():
    mod = _make_large_scene()
    np.testing.assert_array_equal(mod.mirror_index(10, 3, 7, 0)[:7], [0, 1, 2, 2, 1, 0, 0])
    np.testing.assert_array_equal(mod.mirror_index(10, 3, 6, 2), [3, 3, 0, 1, 2, 2, 1, 0, 3, 3])


def test_make_large_scene_with_border(tmp_path, data_dir):
    from pansharp_jax.data.io import load_scene

    mod = _make_large_scene()
    ms_path, pan_path = mod.make_scene(1280, tmp_path, border=64, source=data_dir / "fr" / "wv2_pnn.mat")
    assert (ms_path.name, pan_path.name) == ("wv2_1280_b64_ms.tif", "wv2_1280_b64_pan.tif")
    src = load_scene(data_dir / "fr" / "wv2_pnn.mat")
    with pg.GeoTiffPair.open(ms_path, pan_path) as pair:
        assert (pair.height, pair.width, pair.ratio, pair.nbands, pair.bits) == (1408, 1408, 4, 8, 11)
        assert pair.sensor.name == "WV2"
        frame = np.ones((1408, 1408), bool)
        frame[64:-64, 64:-64] = False
        np.testing.assert_array_equal(pair.nodata_mask(0, 1408, 0, 1408), frame)
        np.testing.assert_allclose(pair.read_pan(64, 1344, 64, 1344), src.pan, atol=1e-12)
        np.testing.assert_allclose(pair.read_lrms(16, 336, 16, 336), src.lrms, atol=1e-12)
        t = pair.georef["transform"]
        assert t[1] == 0.5 and t[5] == -0.5
    with rasterio.open(ms_path) as ms:
        assert ms.transform.a == 2.0 and (ms.transform.c, ms.transform.f) == (t[0], t[3])

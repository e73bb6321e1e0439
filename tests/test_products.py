"""Products a GIS user can open: GeoTIFF pairs fused window by window into COGs, tiled
equal to whole, nodata frames, catalogues, and output paths that never lose data."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from pansharp_jax.cli import main
from pansharp_jax.data.demo import demo_scene, write_demo_scene

rasterio = pytest.importorskip("rasterio")

EPSG = "EPSG:32633"


def _write_tif(path: Path, hwc: np.ndarray, pixel: float, nodata: float | None = None) -> Path:
    from affine import Affine

    a = np.asarray(hwc)
    prof = {"driver": "GTiff", "height": a.shape[0], "width": a.shape[1], "count": a.shape[2], "dtype": a.dtype.name,
            "crs": EPSG, "transform": Affine(pixel, 0, 500000.0, 0, -pixel, 4650000.0), "tiled": True,
            "blockxsize": 64, "blockysize": 64}  # fmt: skip
    if nodata is not None:
        prof["nodata"] = nodata
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(np.moveaxis(a, -1, 0))
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo's full-resolution scene (QB, 4 bands, PAN 256 x 256) as a uint16 GeoTIFF pair."""
    d = tmp_path_factory.mktemp("pair")
    sc = demo_scene("fr")
    dn = lambda x: np.rint(x * 2047).astype(np.uint16)  # noqa: E731
    return _write_tif(d / "qb_ms.tif", dn(sc.lrms), 2.0), _write_tif(d / "qb_pan.tif", dn(sc.pan), 0.5)


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.moveaxis(src.read(), 0, -1)


def test_geotiff_product_is_a_cog_with_the_pan_georeference(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path], tmp_path: Path) -> None:
    from pansharp_jax.products.geotiff import cog_report

    ms, pan = pair
    out = tmp_path / "gsa.tif"
    rc, stdout, err = _run(capsys, "fuse", "-m", "gsa", "-i", ms, "--pan", pan, "-o", out, "--sensor", "QB", "--tile", "64", "--no-progress")
    assert rc == 0, err
    rep = cog_report(out)
    assert rep["layout"] == "COG" and rep["tiled"] and rep["compression"].upper() == "DEFLATE"
    with rasterio.open(out) as f, rasterio.open(pan) as p:
        assert f.crs == p.crs and f.transform == p.transform and f.nodata == 0
        assert f.count == 4 and f.dtypes[0] == "uint16"
        tags = f.tags()
        assert tags["method"] == "gsa" and "pansharp_jax" in tags["software"] and tags["created"]
        assert all(d for d in f.descriptions)
    mode = stat.S_IMODE(os.stat(out).st_mode)
    assert mode & 0o044, oct(mode)  # readable by others, as a normal file (not 0600)


@pytest.mark.parametrize("method", ["exp", "gsa", "mtf_glp_fs", "bt_h", "pracs"])
def test_tiled_equals_whole_for_classical_methods(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path], tmp_path: Path, method: str) -> None:
    ms, pan = pair
    whole, tiled = tmp_path / "whole.npz", tmp_path / "tiled.npz"
    assert _run(capsys, "fuse", "-m", method, "-i", ms, "--pan", pan, "--sensor", "QB", "-o", whole)[0] == 0
    rc, _, err = _run(capsys, "fuse", "-m", method, "-i", ms, "--pan", pan, "--sensor", "QB", "-o", tiled, "--tile", "64", "--no-progress")
    assert rc == 0, err
    with np.load(whole) as a, np.load(tiled) as b:
        assert np.abs(a["fused"].astype(np.float64) - b["fused"]).max() <= 1e-6


def test_tiled_equals_whole_for_a_cnn(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path], tmp_path: Path) -> None:
    import jax

    from pansharp_jax.classical import upsample_ms
    from pansharp_jax.methods import from_params
    from pansharp_jax.models import registry
    from pansharp_jax.products import engine
    from pansharp_jax.products.geotiff import GeoTiffPair

    cfg = registry.default_config("fusionnet")
    cfg.bands = 4
    module = registry.build_model(cfg)
    x = np.zeros((1, 8, 8, 4), np.float32)
    params = module.init(jax.random.PRNGKey(3), x, np.zeros((1, 32, 32, 1), np.float32), upsample_ms(x, 4), train=False)["params"]
    method = from_params("fusionnet", params, cfg)
    with GeoTiffPair.open(*pair, sensor="QB") as src:
        whole = engine.fuse_source(method, src)
        sink = engine.ArraySink(src.height, src.width, src.nbands)
        rep = engine.fuse_tiled(method, src, sink, tile=64, batch=3, progress=False)
    assert rep.tiles == 16 and rep.margin >= 12
    assert np.abs(sink.array - whole).max() <= 1e-6


def test_nodata_frame_gives_finite_products_in_range(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sc = demo_scene("fr")
    dn = lambda x: np.rint(x * 2047).astype(np.uint16)  # noqa: E731
    b = 16  # PAN pixels of zeros around the scene (4 MS pixels)
    ms = _write_tif(tmp_path / "f_ms.tif", np.pad(dn(sc.lrms), ((b // 4,) * 2, (b // 4,) * 2, (0, 0))), 2.0, nodata=0)
    pan = _write_tif(tmp_path / "f_pan.tif", np.pad(dn(sc.pan), ((b,) * 2, (b,) * 2, (0, 0))), 0.5, nodata=0)
    for method in ("mtf_glp_hpm", "gsa", "bdsd"):
        out = tmp_path / f"{method}.npz"
        rc, _, err = _run(capsys, "fuse", "-m", method, "-i", ms, "--pan", pan, "--sensor", "QB", "-o", out, "--tile", "96", "--no-progress")
        assert rc == 0, err
        with np.load(out) as z:
            f = z["fused"]
        assert np.isfinite(f).all() and f.min() >= 0 and f.max() <= 1, method
        assert (f[:b] == 0).all() and (f[:, -b:] == 0).all()  # the frame stays nodata
        assert f[b:-b, b:-b].mean() > 0.05


def test_catalogue_skips_finished_products(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_demo_scene(scenes / "a.npz", "fr")
    write_demo_scene(scenes / "b.npz", "rr")
    (scenes / "notes.txt").write_text("not a scene")
    out = tmp_path / "products"
    rc, stdout, err = _run(capsys, "fuse", "-m", "exp", "-i", scenes, "-o", out, "--format", ".npz", "--no-progress")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a_exp.npz", "b_exp.npz"]
    first = (out / "a_exp.npz").stat().st_mtime_ns
    (out / "b_exp.npz").unlink()  # as if the run had been killed before b
    rc, stdout, err = _run(capsys, "fuse", "-m", "exp", "-i", str(scenes / "*.npz"), "-o", out, "--format", ".npz", "--no-progress")
    assert rc == 0, err
    assert "a_exp.npz exists: skipped" in stdout and "1 fused, 1 skipped" in stdout
    assert (out / "a_exp.npz").stat().st_mtime_ns == first and (out / "b_exp.npz").is_file()


# --- what a new user tripped over: files ---------------------------------------------------
def _one_error(rc: int, err: str, needle: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("pansharp: warning: ")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("pansharp: error: ") and needle in lines[0], err


def test_output_never_overwrites_an_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    scene = write_demo_scene(tmp_path / "scene.npz", "fr")
    before = scene.read_bytes()
    rc, _, err = _run(capsys, "fuse", "-m", "exp", "-i", scene, "-o", scene, "--overwrite")
    _one_error(rc, err, "never writes over an input")
    assert scene.read_bytes() == before


def test_existing_output_needs_overwrite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    scene = write_demo_scene(tmp_path / "scene.npz", "fr")
    out = tmp_path / "f.npz"
    out.write_bytes(b"keep me")
    rc, _, err = _run(capsys, "fuse", "-m", "exp", "-i", scene, "-o", out)
    _one_error(rc, err, "--overwrite")
    assert out.read_bytes() == b"keep me"
    assert _run(capsys, "fuse", "-m", "exp", "-i", scene, "-o", out, "--overwrite")[0] == 0
    with np.load(out) as z:
        assert z["fused"].shape == (256, 256, 4)


@pytest.mark.parametrize("case", ["missing_parent", "parent_is_file", "directory"])
def test_bad_output_paths_fail_before_computing(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    from pansharp_jax.products import engine

    scene = write_demo_scene(tmp_path / "scene.npz", "fr")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    out = {"missing_parent": tmp_path / "nope" / "f.tif", "parent_is_file": tmp_path / "afile" / "f.tif", "directory": tmp_path / "adir"}[case]

    def no_fusion(*a: object, **k: object) -> None:
        raise AssertionError("fused before checking the output path")

    monkeypatch.setattr(engine, "fuse_source", no_fusion)
    monkeypatch.setattr(engine, "fuse_tiled", no_fusion)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, _, err = _run(capsys, "fuse", "-m", "exp", "-i", scene, "-o", out)
    needle = {"missing_parent": "does not exist", "parent_is_file": "is a file", "directory": "folder"}[case]
    _one_error(rc, err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no folder created silently


def test_npz_and_mat_products_have_normal_permissions(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    scene = write_demo_scene(tmp_path / "scene.npz", "fr")
    for ext in (".npz", ".mat"):
        out = tmp_path / f"f{ext}"
        assert _run(capsys, "fuse", "-m", "exp", "-i", scene, "-o", out)[0] == 0
        assert stat.S_IMODE(os.stat(out).st_mode) & 0o044, ext


def test_compare_leaves_no_folder_after_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pansharp_jax import classical

    scene = write_demo_scene(tmp_path / "scene.npz", "rr")

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setitem(classical.METHODS, "gsa", boom)
    out = tmp_path / "cmp"
    rc, _, err = _run(capsys, "compare", "-i", scene, "--methods", "exp,gsa", "-o", out, "--no-progress")
    assert rc == 1 and "kaboom" in err
    assert not out.exists()


def test_compare_scores_in_titles_zoom_and_saved_products(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    scene = write_demo_scene(tmp_path / "scene.npz", "rr")
    out = tmp_path / "cmp"
    rc, stdout, err = _run(capsys, "compare", "-i", scene, "--methods", "exp,gsa", "-o", out, "--save-products", "--zoom", "128", "--no-progress")
    assert rc == 0, err
    assert (out / "grid_zoom.png").is_file() and mpimg.imread(out / "grid_zoom.png").shape == mpimg.imread(out / "grid.png").shape
    with np.load(out / "gsa.npz") as z:
        fused = z["fused"]
    assert fused.shape == (256, 256, 4) and fused.min() >= 0 and fused.max() <= 1


def test_compare_scores_clipped_products_as_the_readme_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """CANNet's released WV3 weights on wv3_cdif: the README's table (outputs clipped as the
    toolbox does) is SAM 5.833 / ERGAS 6.415; unclipped scoring gave 6.394 / 6.664."""
    import json

    data, weights = os.environ.get("PANSHARP_DATA"), os.environ.get("PANSHARP_WEIGHTS")
    if not (data and weights and (Path(data) / "rr" / "wv3_cdif.mat").is_file() and (Path(weights) / "cannet" / "cannet_wv3.pth").is_file()):
        pytest.skip("needs PANSHARP_DATA (rr/wv3_cdif.mat) and PANSHARP_WEIGHTS (cannet/cannet_wv3.pth)")
    out = tmp_path / "cmp"
    rc, _, err = _run(capsys, "compare", "-i", "rr/wv3_cdif.mat", "--methods", "exp,cannet", "--weights", "cannet=cannet/cannet_wv3.pth",
                      "-o", out, "--no-progress")  # fmt: skip
    assert rc == 0, err
    scores = {r["method"]: r["metrics"] for r in json.loads((out / "metrics.json").read_text())["results"]}
    # 2e-3: CANNet's k-means assignments follow the last bits of its distances, which another
    # compiled program rounds differently (LLVM's optimisations off, as the suite compiles: SAM
    # 5.8342; the frequency report's run 5.834); unclipped scoring is 0.56 / 0.25 away
    assert scores["cannet"]["SAM"] == pytest.approx(5.833, abs=2e-3)
    assert scores["cannet"]["ERGAS"] == pytest.approx(6.415, abs=2e-3)


def test_eval_tiled_equals_whole_scene_full_resolution(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path], tmp_path: Path) -> None:
    import json

    ms, pan = pair
    product = tmp_path / "exp.tif"
    assert _run(capsys, "fuse", "-m", "exp", "-i", ms, "--pan", pan, "--sensor", "QB", "-o", product)[0] == 0
    whole, tiled = tmp_path / "whole.json", tmp_path / "tiled.json"
    rc, _, err = _run(capsys, "eval", "-f", product, "-i", ms, "--pan", pan, "--sensor", "QB", "--json", whole)
    assert rc == 0, err
    rc, _, err = _run(capsys, "eval", "-f", product, "-i", ms, "--pan", pan, "--sensor", "QB", "--json", tiled, "--tile", "64")
    assert rc == 0, err
    a, b = json.loads(whole.read_text())["metrics"], json.loads(tiled.read_text())["metrics"]
    assert set(a) == set(b) == {"D_lambda", "D_lambda_K", "D_S", "QNR", "HQNR"}
    for k in a:
        assert b[k] == pytest.approx(a[k], abs=1e-9), k
    rc, _, err = _run(capsys, "eval", "-f", product, "-i", ms, "--pan", pan, "--tile", "48")
    _one_error(rc, err, "multiple of the 32-pixel block")


def test_feathered_blending_of_a_global_method_keeps_equal_values() -> None:
    """Windows that agree blend to the same values, whatever the feather (the blender's
    weights sum to one and its row buffer is reused across tile rows)."""
    from pansharp_jax.data.scene import Scene
    from pansharp_jax.methods import GLOBAL, Method
    from pansharp_jax.products import engine

    rng = np.random.default_rng(5)
    scene = Scene(lrms=rng.uniform(0, 1, (52, 40, 3)), pan=rng.uniform(0, 1, (208, 160, 1)), ratio=4)

    def local_product(lrms: np.ndarray, pan: np.ndarray, sensor: object, r: int, lms: object = None) -> np.ndarray:
        return np.repeat(np.repeat(lrms, r, 1), r, 2) * pan

    m = Method("prod", "Prod", local_product, "test", margin_fn=lambda r: 12, receptive=GLOBAL)
    expected = m.fuse(scene)
    sink = engine.ArraySink(208, 160, 3)
    rep = engine.fuse_tiled(m, engine.SceneSource(scene), sink, tile=48, batch=2, progress=False)
    assert rep.feather == rep.margin == 12 and rep.tiles == 5 * 4
    np.testing.assert_allclose(sink.array, expected, atol=1e-12)


def test_max_memory_picks_whole_scene_or_a_tile_that_fits() -> None:
    from pansharp_jax.data.scene import Scene
    from pansharp_jax.methods import resolve
    from pansharp_jax.products import engine

    rng = np.random.default_rng(2)
    scene = Scene(lrms=rng.uniform(0, 1, (64, 64, 4)), pan=rng.uniform(0, 1, (256, 256, 1)), ratio=4, sensor="QB")
    src = engine.SceneSource(scene)
    method = resolve("gsa")
    whole = engine.planned_bytes(method, src, (256, 256))
    assert whole is not None and whole > 256 * 256 * 4 * 8  # at least the float64 product
    assert engine.choose_tile(method, src, 10 * whole) == (None, whole)  # fits: whole scene
    tile, planned = engine.choose_tile(method, src, 1.0)  # nothing fits: the smallest candidate
    assert tile == engine.TILE_CANDIDATES[-1] and planned is not None and planned > 1.0
    # a 128-pixel core with a 40-pixel margin: the window's XLA buffers plus the row buffer
    window = 128 + 2 * method.margin(4)
    assert planned == engine.planned_bytes(method, src, (window, window)) + 3 * window * 256 * 4 * 8
    assert engine.choose_tile(method, src, planned) == (None, whole)  # the whole scene is cheaper here

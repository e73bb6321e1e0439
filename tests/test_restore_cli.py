"""``pansharp restore`` and the restoration image reader: files in, files out, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pansharp_jax.cli.main import main
from pansharp_jax.errors import InputError
from pansharp_jax.restoration.images import read_image, stretch

# the tiny solver settings of tests/test_qwsnm.py::TINY (shared jit cache)
FAST = ["--iters", "2", "--patch", "3", "--patches", "8", "--window", "3", "--step", "2", "--no-progress"]


def clean_image(n: int = 24) -> np.ndarray:
    """The smooth test image of tests/test_qwsnm.py (copied: tests are not a package)."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx), 0.5 + 0.3 * np.cos(5 * yy), 0.3 + 0.5 * xx * yy], -1)
    img[n // 3 : 2 * n // 3, n // 3 : 2 * n // 3] = (0.9, 0.2, 0.1)
    return img.astype(np.float32)


def save_png(path: Path, a: np.ndarray) -> Path:
    Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def test_denoise_png_roundtrip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = clean_image()
    noisy = clean + np.random.default_rng(5).normal(0, 25 / 255, clean.shape)
    src = save_png(tmp_path / "noisy.png", noisy)
    out = tmp_path / "out.png"
    rc = main(["restore", "--task", "denoise", "--sigma", "25", "--input", str(src), "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    got = np.asarray(Image.open(out), np.float64) / 255
    assert got.shape == clean.shape
    noisy8 = np.asarray(Image.open(src), np.float64) / 255
    assert np.mean((got - clean) ** 2) < 0.5 * np.mean((noisy8 - clean) ** 2)
    assert "denoised" in capsys.readouterr().out
    # existing output without --overwrite
    rc = main(["restore", "--task", "denoise", "--sigma", "25", "-i", str(src), "-o", str(out), *FAST])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("case", "message"),
    [("missing", "not found"), ("grey", "3 bands"), ("task", "unknown task"), ("nan", "NaN"), ("range", "expected [0, 1]")],
)
def test_bad_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str) -> None:
    import tifffile

    src = tmp_path / "in.tif"
    task = "denoise"
    if case == "missing":
        src = tmp_path / "nope.png"
    elif case == "grey":
        src = tmp_path / "grey.png"
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(src)
    elif case == "task":
        src = save_png(tmp_path / "ok.png", clean_image(16))
        task = "inpaint"
    elif case == "nan":
        a = clean_image(16)
        a[3, 3, 1] = np.nan
        tifffile.imwrite(src, a, photometric="rgb")
    else:
        tifffile.imwrite(src, clean_image(16) * 3, photometric="rgb")
    rc = main(["restore", "--task", task, "--sigma", "10", "-i", str(src), "-o", str(tmp_path / "o.png"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("pansharp: error:") and message in err, err


def test_multiband_geotiff_true_colour(tmp_path: Path) -> None:
    from pansharp_jax.data.io_geotiff import read_geotiff, write_geotiff

    rng = np.random.default_rng(6)
    dn = rng.integers(100, 2000, size=(24, 24, 4)).astype(np.uint16)  # blue, green, red, nir
    path = tmp_path / "fused.tif"
    georef = {"crs": None, "transform": (500000.0, 2.0, 0.0, 4000000.0, 0.0, -2.0), "nodata": None}
    write_geotiff(path, dn, georef)
    rgb, _ = read_image(path)
    for out_band, in_band in enumerate((2, 1, 0)):
        b = dn[..., in_band].astype(np.float64)
        lo, hi = np.percentile(b, 2), np.percentile(b, 98)
        np.testing.assert_allclose(rgb[..., out_band], np.clip((b - lo) / (hi - lo), 0, 1), atol=1e-6)
    nirg, _ = read_image(path, (3, 1, 0))
    np.testing.assert_allclose(nirg, stretch(dn[..., [3, 1, 0]]), atol=1e-6)
    with pytest.raises(InputError, match="band 5"):
        read_image(path, (4, 1, 0))
    # restore the composite into a float GeoTIFF that keeps the georeference
    out = tmp_path / "restored.tif"
    assert main(["restore", "--task", "denoise", "--sigma", "25", "-i", str(path), "-o", str(out), *FAST]) == 0
    back, ref = read_geotiff(out)
    assert back.shape == (24, 24, 3) and back.dtype == np.float32 and 0 <= back.min() and back.max() <= 1
    assert np.allclose(ref["transform"], georef["transform"])


def test_real_wv3_composite(data_dir: Path) -> None:
    from pansharp_jax.data.io import load_scene
    from pansharp_jax.data.sensors import get_sensor
    from pansharp_jax.restoration.images import true_colour

    scene = load_scene(data_dir / "rr" / "wv3_cdif.mat")
    names = get_sensor("WV3").band_names
    rgb = true_colour(np.asarray(scene.gt), (names.index("red"), names.index("green"), names.index("blue")))
    assert rgb.shape == (256, 256, 3) and rgb.min() >= 0 and rgb.max() <= 1
    for b in range(3):  # 2-98 % stretch of a real scene: ~2 % of pixels at each end, not blank
        assert 0.005 < np.mean(rgb[..., b] == 0) < 0.05 and 0.005 < np.mean(rgb[..., b] == 1) < 0.05
        assert np.std(rgb[..., b]) > 0.1

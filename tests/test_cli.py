"""The ``pansharp`` command line, end to end, in process (``main(argv)`` returns the exit code).

Scenes: the demo scene written to tmp_path (.npz) and small hand-made .mat files for the
error cases. Expected values are independent of the code under test where possible: the
GT scored against itself is perfect, EXP has D_lambda = 0, DN = value x 2047.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import jax
import numpy as np
import pytest
import scipy.io

from pansharp_jax import __version__, classical
from pansharp_jax.cli import main
from pansharp_jax.methods import Method
from pansharp_jax.data.demo import demo_scene, write_demo_scene
from pansharp_jax.errors import InputError

RR_KEYS = {"Q2n", "Q_avg", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "FSDS"}
FR_KEYS = {"D_lambda", "D_lambda_K", "D_S", "QNR", "HQNR"}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scenes")
    return {"rr": write_demo_scene(d / "demo_rr.npz", "rr"), "fr": write_demo_scene(d / "demo_fr.npz", "fr")}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _write_mat(path: Path, **arrays: object) -> Path:
    scipy.io.savemat(path, arrays)
    return path


def _small(rng_seed: int = 0, *, lrms_hw: int = 16, pan_hw: int = 64, bands: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rng_seed)
    return {"lrms": rng.uniform(100, 1500, (lrms_hw, lrms_hw, bands)), "pan": rng.uniform(100, 1500, (pan_hw, pan_hw))}


# --- fuse -------------------------------------------------------------------------------
def test_fuse_npz(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fused.npz"
    rc, stdout, err = run(capsys, "fuse", "--method", "gsa", "--input", scenes["rr"], "--out", out)
    assert rc == 0, err
    assert "GSA" in stdout and err == ""
    with np.load(out) as z:
        fused = z["fused"]
        assert str(z["sensor"]) == "QB" and int(z["ratio"]) == 4 and int(z["bits"]) == 11
    assert fused.shape == (256, 256, 4) and fused.dtype == np.float32
    assert -0.05 < fused.min() and fused.max() < 1.05
    sc = demo_scene("rr")
    with jax.enable_x64(True):  # the CLI runs classical methods in float64, toolbox-exact
        direct = np.asarray(classical.METHODS["gsa"](None, sc.lrms, sc.pan, sensor="QB", ratio=4))
    np.testing.assert_allclose(fused, np.clip(direct, 0, 1), atol=1e-6)  # products are clipped
    # a fused product is closer to the GT than the bare LRMS band means
    assert np.abs(fused - sc.gt).mean() < np.abs(sc.gt - sc.gt.mean((0, 1))).mean()


def test_fuse_mat_is_dn_and_toolbox_name_works(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    out_mat, out_npz = tmp_path / "f.mat", tmp_path / "f.npz"
    assert run(capsys, "fuse", "-m", "EXP", "-i", scenes["fr"], "-o", out_mat)[0] == 0
    assert run(capsys, "fuse", "-m", "exp", "-i", scenes["fr"], "-o", out_npz)[0] == 0
    i_f = scipy.io.loadmat(out_mat)["I_F"]
    with np.load(out_npz) as z:
        np.testing.assert_allclose(i_f / 2047.0, z["fused"], atol=1e-6)
    assert i_f.max() > 100  # DN, not [0, 1]


def test_fuse_tif(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("rasterio")
    out = tmp_path / "f.tif"
    rc, _, err = run(capsys, "fuse", "--method", "exp", "--input", scenes["fr"], "--out", out)
    assert rc == 0, err
    from pansharp_jax.data.io import read_geotiff

    a, _ = read_geotiff(out)
    assert a.shape == (256, 256, 4) and a.dtype == np.uint16 and a.max() <= 2047


# --- eval -------------------------------------------------------------------------------
def test_eval_rr_perfect_on_gt(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    gt = demo_scene("rr").gt
    fused = _write_mat(tmp_path / "gt_as_fused.mat", I_F=gt * 2047.0)
    js = tmp_path / "m.json"
    rc, stdout, err = run(capsys, "eval", "--fused", fused, "--input", scenes["rr"], "--json", js)
    assert rc == 0, err
    data = json.loads(js.read_text())
    assert data["mode"] == "rr" and data["sensor"] == "QB" and set(data["metrics"]) == RR_KEYS
    m = data["metrics"]
    assert m["Q2n"] == pytest.approx(1.0, abs=1e-9)
    assert m["Q_avg"] == pytest.approx(1.0, abs=1e-9)
    assert m["SAM"] == pytest.approx(0.0, abs=1e-6)
    assert m["ERGAS"] == pytest.approx(0.0, abs=1e-9)
    assert "Q2n" in stdout and "ERGAS" in stdout


def test_eval_fr_after_fuse(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    fused = tmp_path / "exp.npz"
    assert run(capsys, "fuse", "--method", "exp", "--input", scenes["fr"], "--out", fused)[0] == 0
    js = tmp_path / "fr.json"
    rc, stdout, err = run(capsys, "eval", "--fused", fused, "--input", scenes["fr"], "--json", js)
    assert rc == 0, err
    data = json.loads(js.read_text())
    assert data["mode"] == "fr" and set(data["metrics"]) == FR_KEYS
    m = data["metrics"]
    assert abs(m["D_lambda"]) < 1e-6  # EXP keeps the inter-band relations of the upsampled MS
    assert m["QNR"] == pytest.approx((1 - m["D_lambda"]) * (1 - m["D_S"]), abs=1e-9)
    assert m["HQNR"] == pytest.approx((1 - m["D_lambda_K"]) * (1 - m["D_S"]), abs=1e-9)
    assert "HQNR" in stdout


def test_eval_wrong_size_product(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    bad = _write_mat(tmp_path / "bad.mat", I_F=np.ones((64, 64, 4)))
    rc, _, err = run(capsys, "eval", "--fused", bad, "--input", scenes["rr"])
    assert rc == 2 and "shape" in err and len(err.strip().splitlines()) == 1


# --- compare ----------------------------------------------------------------------------
def test_compare_rr(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    rc, stdout, err = run(capsys, "compare", "--input", scenes["rr"], "--methods", "exp,gsa", "--out", out, "--no-progress")
    assert rc == 0, err
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["exp", "gsa"]
    assert [r["label"] for r in rows] == ["EXP", "GSA"]
    assert RR_KEYS <= set(rows[0])
    data = json.loads((out / "metrics.json").read_text())
    assert data["mode"] == "rr" and [r["method"] for r in data["results"]] == ["exp", "gsa"]
    for r in data["results"]:
        assert set(r["metrics"]) == RR_KEYS and r["seconds"] >= 0
    md = (out / "metrics.md").read_text()
    assert "| EXP |" in md and "| GSA |" in md and "ERGAS" in md
    # cells 268 x 290 px, 34 px header: [GT, LRMS, PAN], [EXP, GSA], [2 error maps], colour bar
    assert mpimg.imread(out / "grid.png").shape[:2] == (34 + 3 * 290 + 66, 3 * 268)
    assert "EXP" in stdout and "GSA" in stdout


def test_compare_fr_auto_and_forced(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fr"
    rc, _, err = run(capsys, "compare", "-i", scenes["rr"], "--methods", "exp", "-o", out, "--mode", "fr", "--no-progress")
    assert rc == 0, err
    data = json.loads((out / "metrics.json").read_text())
    assert data["mode"] == "fr" and set(data["results"][0]["metrics"]) == FR_KEYS
    # [LRMS, PAN], [EXP]: 2 columns, 2 rows, no error maps
    assert mpimg.imread(out / "grid.png").shape[:2] == (34 + 2 * 290, 2 * 268)
    rc, _, err = run(capsys, "compare", "-i", scenes["fr"], "--methods", "exp", "-o", out, "--mode", "rr")
    assert rc == 2 and "ground truth" in err


# --- method resolution ------------------------------------------------------------------
def test_method_source_plugs_in(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Doubler:
        name = "test"
        options = ()

        def names(self) -> list[str]:
            return ["half_exp"]

        def resolve(self, name: str, opts: dict) -> Method | None:
            if name != "half_exp":
                return None
            return Method("half_exp", "HALF", lambda lr, pan, sensor, r: 0.5 * np.repeat(np.repeat(lr, r, 1), r, 2), "test")

    monkeypatch.setattr(_sources_module(), "_SOURCES", [*_sources_module()._SOURCES, Doubler()])
    out = tmp_path / "h.npz"
    assert run(capsys, "fuse", "--method", "half_exp", "--input", scenes["fr"], "--out", out)[0] == 0
    with np.load(out) as z:
        np.testing.assert_allclose(z["fused"][2, 2], 0.5 * demo_scene("fr").lrms[0, 0], atol=1e-6)


def _sources_module():
    import importlib

    return importlib.import_module("pansharp_jax.methods.sources")


# --- bad input: one line on stderr, exit code 2 -----------------------------------------
def _assert_input_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("pansharp: warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("pansharp: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])


def test_error_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", tmp_path / "nope.mat", "-o", tmp_path / "o.npz")
    _assert_input_error(rc, err, "not found", "nope.mat")


def test_error_missing_key(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", scenes["rr"], "--keys", "lrms=MS,pan=pan", "-o", tmp_path / "o.npz")
    _assert_input_error(rc, err, "'MS'", "not found")


def test_error_wrong_band_count(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", scenes["rr"], "--sensor", "WV3", "-o", tmp_path / "o.npz")
    _assert_input_error(rc, err, "wrong band count", "8")


def test_error_not_multiple_of_ratio(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = _small()
    path = _write_mat(tmp_path / "odd.mat", I_MS_LR=a["lrms"], I_PAN=a["pan"][:62, :62])
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", path, "-o", tmp_path / "o.npz")
    _assert_input_error(rc, err, "not a multiple of the ratio")


def test_error_nan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = _small()
    a["lrms"][3, 4, 1] = np.nan
    path = _write_mat(tmp_path / "nan.mat", I_MS_LR=a["lrms"], I_PAN=a["pan"])
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", path, "-o", tmp_path / "o.npz")
    _assert_input_error(rc, err, "NaN/Inf")


def test_error_out_of_dn_range(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = _small()
    a["pan"][0, 0] = 4000.0  # above 2047 = 11-bit maximum
    path = _write_mat(tmp_path / "range.mat", I_MS_LR=a["lrms"], I_PAN=a["pan"])
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", path, "--sensor", "QB", "-o", tmp_path / "o.npz")
    _assert_input_error(rc, err, "outside the sensor's DN range")


def test_error_corrupt_and_truncated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = _small()
    good = _write_mat(tmp_path / "good.mat", I_MS_LR=a["lrms"], I_PAN=a["pan"])
    trunc = tmp_path / "trunc.mat"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", trunc, "-o", tmp_path / "o.npz")
    _assert_input_error(rc, err, "corrupt or truncated")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"this is not a mat file at all" * 10)
    rc, _, err = run(capsys, "eval", "--fused", junk, "-i", good)
    _assert_input_error(rc, err, "unrecognised or corrupt")


def test_error_unknown_method(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    rc, _, err = run(capsys, "fuse", "-m", "magic", "-i", scenes["rr"], "-o", tmp_path / "o.npz")
    _assert_input_error(rc, err, "unknown method 'magic'", "gsa")
    rc, _, err = run(capsys, "compare", "-i", scenes["rr"], "--methods", "exp,magic", "-o", tmp_path / "c")
    _assert_input_error(rc, err, "unknown method 'magic'")


def test_error_unknown_sensor(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", scenes["rr"], "--sensor", "Hubble", "-o", tmp_path / "o.npz")
    _assert_input_error(rc, err, "unknown sensor 'Hubble'")


def test_error_bad_output_extension(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path) -> None:
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", scenes["rr"], "-o", tmp_path / "o.png")
    _assert_input_error(rc, err, "unsupported output format '.png'")
    assert not (tmp_path / "o.png").exists()


def test_error_usage(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "fuse", "--method", "exp")
    _assert_input_error(rc, err, "required", "--input")
    rc, _, err = run(capsys, "frobnicate")
    _assert_input_error(rc, err, "invalid choice")


# --- internal errors: one line, exit 1; --debug re-raises -------------------------------
def test_internal_error(capsys: pytest.CaptureFixture[str], scenes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> np.ndarray:
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setitem(classical.METHODS, "exp", boom)
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", scenes["rr"], "-o", tmp_path / "o.npz")
    assert rc == 1
    assert err.strip().splitlines() == [
        "pansharp: internal error: RuntimeError: kaboom second line (rerun with --debug for the traceback)"
    ]
    rc, _, err = run(capsys, "compare", "-i", scenes["rr"], "--methods", "exp", "-o", tmp_path / "c", "--no-progress")
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "kaboom" in err
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["fuse", "-m", "exp", "-i", str(scenes["rr"]), "-o", str(tmp_path / "o.npz"), "--debug"])
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["--debug", "fuse", "-m", "exp", "-i", str(scenes["rr"]), "-o", str(tmp_path / "o.npz")])


# --- version and the installed entry point ------------------------------------------------
def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"pansharp {__version__}"


def test_installed_entry_point() -> None:
    exe = Path(sys.executable).parent / "pansharp"
    if not exe.exists():
        pytest.skip(f"console script not installed next to {sys.executable} (run `make install`)")
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"pansharp {__version__}"
    res = subprocess.run([str(exe), "fuse", "-m", "exp", "-i", "does_not_exist.mat", "-o", "x.npz"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pansharp: error: file not found: does_not_exist.mat"), lines


def test_fuse_help_lists_the_methods(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "fuse", "--help")
    assert rc == 0
    listed = out.split("methods:")[-1]
    for name in ("gsa", "mtf_glp_fs", "fusionnet", "fusionmamba", "cannet"):
        assert name in listed


def test_assumed_sensor_and_bits_are_said(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = _small()
    path = _write_mat(tmp_path / "scene.mat", I_MS_LR=a["lrms"], I_PAN=a["pan"])
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", path, "-o", tmp_path / "o.npz")
    assert rc == 0, err
    warning = [ln for ln in err.splitlines() if ln.startswith("pansharp: warning: assumed")]
    assert len(warning) == 1 and "generic" in warning[0] and "--sensor" in warning[0] and "--bits" in warning[0]
    rc, _, err = run(capsys, "fuse", "-m", "exp", "-i", path, "--sensor", "QB", "--bits", "11", "-o", tmp_path / "o2.npz")
    assert rc == 0 and "assumed" not in err

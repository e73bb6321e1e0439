"""``pansharp simulate``: full-resolution scenes -> Wald-reduced PanCollection sets that train.

The sets made from the real WV2 scene (``fr/wv2_pnn.mat``) are checked against an independent
reading of the file (scipy) and direct calls of the toolbox-exact Wald functions: whole-scene
degradation for ``--degrade scene``, per-patch degradation for ``--degrade patch``,
``interp23tap`` for ``lms``. Then the printed ``pansharp train`` command trains FusionNet on
them for two steps.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shlex
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

import pansharp_jax
from pansharp_jax.cli import main
from pansharp_jax.data.io_geotiff import write_geotiff
from pansharp_jax.data.pipeline import PanCollectionSource
from pansharp_jax.data.sensors import Sensor
from pansharp_jax.data.wald import interp23tap, wald_degrade

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "valid", "test")
TOL = 1e-9  # DN


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("pansharp: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("pansharp: error: "), err
    return lines[0]


def _read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def _simulate(out: Path, *extra: object) -> tuple[dict[str, dict[str, np.ndarray]], dict, str]:
    import contextlib
    import io

    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        rc = main(["simulate", "--input", "fr/wv2_pnn.mat", "--out", str(out), "--no-progress", *map(str, extra)])
    assert rc == 0, err.getvalue()
    sets = {s: _read(out / f"{s}.h5") for s in SPLITS if (out / f"{s}.h5").exists()}
    return sets, json.loads((out / "data_card.json").read_text()), buf.getvalue()


@pytest.fixture(scope="module")
def wv2(data_dir: Path) -> dict[str, np.ndarray]:
    """The raw scene, read with scipy (not with the package's loader): DN as float64."""
    path = data_dir / "fr" / "wv2_pnn.mat"
    if not path.is_file():
        pytest.skip("fr/wv2_pnn.mat missing under PANSHARP_DATA")
    m = scipy.io.loadmat(path)
    return {"ms": m["I_MS"].astype(np.float64), "pan": m["I_PAN"].astype(np.float64)[..., None], "path": path}


@pytest.fixture(scope="module")
def scene_set(wv2: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, str, Path]:
    """--degrade scene, 32-px patches without overlap: 10 x 10 = 100 patches, split 80/10/10."""
    out = tmp_path_factory.mktemp("sim") / "scene"
    sets, card, stdout = _simulate(out, "--patch", 32, "--stride", 32, "--split", "0.8,0.1,0.1", "--seed", 3)
    return sets, card, stdout, out


@pytest.fixture(scope="module")
def patch_set(wv2: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, str, Path]:
    """--degrade patch, 64-px patches at stride 32 (overlapping): 9 x 9 = 81 patches."""
    out = tmp_path_factory.mktemp("sim") / "patch"
    sets, card, stdout = _simulate(out, "--patch", 64, "--stride", 32, "--split", "0.8,0.1,0.1", "--degrade", "patch",
                                   "--dtype", "float64")  # fmt: skip
    return sets, card, stdout, out


def _hwc(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 0, -1)


def test_scene_mode_patches_are_crops_of_the_degraded_scene(wv2: dict, scene_set: tuple) -> None:
    sets, _, _, _ = scene_set
    with jax.enable_x64(True):
        lrms, pan_lr = (np.asarray(a) for a in wald_degrade(jnp.asarray(wv2["ms"]), jnp.asarray(wv2["pan"]), "WV2", 4))
    with jax.enable_x64(True):  # one call for every split (one eager trace)
        lms_all = np.asarray(interp23tap(jnp.asarray(np.concatenate([np.moveaxis(d["ms"], 1, -1) for d in sets.values()])), 4))
    start = 0
    for name, d in sets.items():
        n = len(d["gt"])
        assert d["gt"].shape == (n, 8, 32, 32) and d["ms"].shape == (n, 8, 8, 8)
        assert d["lms"].shape == (n, 8, 32, 32) and d["pan"].shape == (n, 1, 32, 32) and d["origin"].shape == (n, 3)
        assert all(d[k].dtype == np.float64 for k in ("gt", "ms", "lms", "pan"))
        lms, start = lms_all[start : start + n], start + n
        for i, (s, r, c) in enumerate(d["origin"]):
            assert s == 0 and r % 32 == 0 and c % 32 == 0, name
            np.testing.assert_array_equal(_hwc(d["gt"][i]), wv2["ms"][r : r + 32, c : c + 32])
            np.testing.assert_allclose(_hwc(d["ms"][i]), lrms[r // 4 : r // 4 + 8, c // 4 : c // 4 + 8], rtol=0, atol=TOL)
            np.testing.assert_allclose(_hwc(d["pan"][i]), pan_lr[r : r + 32, c : c + 32], rtol=0, atol=TOL)
            np.testing.assert_allclose(_hwc(d["lms"][i]), lms[i], rtol=0, atol=TOL)
        # DN, not [0, 1]: integers of the 11-bit range for the GT; the inputs near it
        assert d["gt"].max() <= 2047 and d["gt"].min() >= 0 and d["gt"].max() > 200
        assert np.array_equal(d["gt"], np.rint(d["gt"]))
        assert -50 < d["pan"].min() and d["pan"].max() < 2047 + 50 and d["ms"].max() > 200


def test_patch_mode_ms_is_wald_degrade_of_each_gt(wv2: dict, patch_set: tuple) -> None:
    sets, card, _, _ = patch_set
    assert card["degrade"] == "patch"
    d = sets["test"]
    for i, (_, r, c) in enumerate(d["origin"]):
        gt = _hwc(d["gt"][i])
        np.testing.assert_array_equal(gt, wv2["ms"][r : r + 64, c : c + 64])
        with jax.enable_x64(True):
            lrms, pan_lr = wald_degrade(jnp.asarray(gt), jnp.asarray(wv2["pan"][4 * r : 4 * r + 256, 4 * c : 4 * c + 256]), "WV2", 4)
        np.testing.assert_allclose(_hwc(d["ms"][i]), np.asarray(lrms), rtol=0, atol=TOL)
        np.testing.assert_allclose(_hwc(d["pan"][i]), np.asarray(pan_lr), rtol=0, atol=TOL)
    # the patch borders differ from the whole-scene degradation (that is what the mode is for)
    with jax.enable_x64(True):
        whole = np.asarray(wald_degrade(jnp.asarray(wv2["ms"]), jnp.asarray(wv2["pan"]), "WV2", 4)[0])
    _, r, c = d["origin"][0]
    assert np.abs(_hwc(d["ms"][0]) - whole[r // 4 : r // 4 + 16, c // 4 : c // 4 + 16]).max() > 1e-3


def _boxes(d: dict) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in o) for o in d["origin"]]


def test_splits_are_disjoint_and_follow_the_fractions(scene_set: tuple, patch_set: tuple) -> None:
    sets, card, _, _ = scene_set
    counts = {s: len(sets[s]["gt"]) for s in SPLITS}
    assert counts == {"train": 80, "valid": 10, "test": 10} == card["counts"]  # 100 patches, no overlap: exact
    allb = [b for s in SPLITS for b in _boxes(sets[s])]
    assert len(set(allb)) == 100 == len(allb) and card["dropped_overlap"] == 0

    sets, card, _, _ = patch_set  # overlapping patches: no pixel shared between splits
    counts = {s: len(sets[s]["gt"]) for s in SPLITS}
    assert counts == card["counts"] and counts["test"] == 8  # round(0.1 * 81); test is never thinned
    assert counts["valid"] == 8 and counts["train"] < 65  # valid sits on the far side: only train is thinned
    assert sum(counts.values()) + card["dropped_overlap"] == 81
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                for _, r1, c1 in _boxes(sets[a]):
                    for _, r2, c2 in _boxes(sets[b]):
                        assert abs(r1 - r2) >= 64 or abs(c1 - c2) >= 64, (a, b, r1, c1, r2, c2)


def test_data_card(wv2: dict, scene_set: tuple) -> None:
    _, card, _, out = scene_set
    assert card["sensor"]["name"] == "WV2" and card["mtf_gains"] == {"ms": [0.35] * 7 + [0.27], "pan": 0.11}
    assert (card["bits"], card["max_dn"], card["ratio"], card["bands"]) == (11, 2047.0, 4, 8)
    assert (card["patch"], card["stride"], card["seed"], card["degrade"]) == (32, 32, 3, "scene")
    assert card["split"] == {"train": 0.8, "valid": 0.1, "test": 0.1}
    assert card["version"] == pansharp_jax.__version__
    assert datetime.datetime.fromisoformat(card["date"]).tzinfo is not None
    (src,) = card["sources"]
    assert src["sha256"] == hashlib.sha256(wv2["path"].read_bytes()).hexdigest()
    assert src["ms_shape"] == [320, 320, 8] and src["pan_shape"] == [1280, 1280, 1]
    assert src["patches"] == card["counts"] and card["files"] == {s: f"{s}.h5" for s in SPLITS}
    ov = card["train_overrides"]
    assert ov["data.kind"] == "panc" and ov["data.scale"] == 2047.0 and ov["data.sensor"] == "WV2"
    assert Path(ov["data.train"]) == (out / "train.h5").absolute() and Path(ov["data.val"]) == (out / "valid.h5").absolute()
    with h5py.File(out / "test.h5") as f:
        assert f.attrs["sensor"] == "WV2" and int(f.attrs["bits"]) == 11
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_printed_command_trains_fusionnet(scene_set: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sets, _, stdout, out = scene_set
    src = PanCollectionSource(out / "train.h5", scale=2047.0)  # the trainer's reader
    assert len(src) == 80
    np.testing.assert_allclose(src[5]["gt"], _hwc(sets["train"]["gt"][5]) / 2047.0, rtol=1e-6)
    np.testing.assert_allclose(src[5]["lrms"], _hwc(sets["train"]["ms"][5]) / 2047.0, rtol=1e-6, atol=1e-7)
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("pansharp train ")]
    argv = shlex.split(line)[1:]
    assert argv[argv.index("--config") + 1] == "configs/fusionnet_wv3.py:smoke"
    argv[argv.index("--config") + 1] = str(ROOT / "configs" / "fusionnet_wv3.py") + ":smoke"
    argv[argv.index("--workdir") + 1] = str(tmp_path / "run")
    quick = ["--no-wandb", "--config.steps=2", "--config.batch_size=4", "--config.eval_every=2",
             "--config.checkpoint.every=2", "--config.eval.batch_size=5"]  # fmt: skip
    rc, stdout, err = run(capsys, *argv, *quick)
    assert rc == 0, err
    assert "trained fusionnet to step 2" in stdout and "best ERGAS" in stdout
    assert (tmp_path / "run" / "checkpoints" / "2").is_dir()


# --- errors --------------------------------------------------------------------------------------


def _tiny(path: Path, *, peak: int = 1000, seed: int = 0, **extra: object) -> Path:
    rng = np.random.default_rng(seed)
    ms = rng.integers(100, peak, (32, 32, 4), endpoint=True).astype(np.uint16)
    pan = rng.integers(100, 1000, (128, 128)).astype(np.uint16)
    scipy.io.savemat(path, {"I_MS_LR": ms, "I_PAN": pan, **extra})
    return path


def test_values_above_the_declared_bits_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = _tiny(tmp_path / "hot.mat", peak=3000, L=np.uint8(11))
    out = tmp_path / "out"
    rc, _, err = run(capsys, "simulate", "-i", scene, "--sensor", "QB", "-o", out, "--patch", 16, "--stride", 16)
    line = _error_line(err)
    assert rc == 2 and "hot.mat" in line and "3000" in line and "bits=11" in line, line
    assert not out.exists() or not any(out.iterdir())
    # --bits 12 accepts the same file
    rc, _, err = run(capsys, "simulate", "-i", scene, "--sensor", "QB", "--bits", 12, "-o", out, "--patch", 16,
                     "--stride", 16, "--split", "0.5,0.25,0.25", "--no-progress")  # fmt: skip
    assert rc == 0, err
    assert json.loads((out / "data_card.json").read_text())["max_dn"] == 4095.0


def test_existing_output_and_bad_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = _tiny(tmp_path / "s.mat")
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.h5").write_bytes(b"old")
    base = ("simulate", "-i", scene, "--sensor", "QB", "--patch", 16, "--stride", 16, "--no-progress")
    rc, _, err = run(capsys, *base, "-o", out)
    assert rc == 2 and "--overwrite" in _error_line(err) and (out / "train.h5").read_bytes() == b"old"
    for bad, words in (("0.5,0.3", "three numbers"), ("0.9,0.2,-0.1", "negative"), ("0.5,0.3,0.3", "sums to"),
                       ("0,0.5,0.5", "nothing for training"), ("a,b,c", "three numbers")):  # fmt: skip
        rc, _, err = run(capsys, *base, "-o", tmp_path / "fresh", "--split", bad)
        assert rc == 2 and words in _error_line(err), (bad, err)
    rc, _, err = run(capsys, *base, "-o", tmp_path / "fresh", "--patch", 18)
    assert rc == 2 and "multiple of the ratio 4" in _error_line(err)
    assert not (tmp_path / "fresh").exists()
    rc, stdout, err = run(capsys, *base, "-o", out, "--overwrite", "--split", "1,0,0")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["data_card.json", "train.h5"]  # no empty valid/test files
    command = shlex.split(stdout.splitlines()[-1])
    assert "--config.data.val" not in [a.partition("=")[0] for a in command]
    assert "--config.batch_size=4" in command  # 4 training patches: fewer than the default batch of 32
    assert len(_read(out / "train.h5")["gt"]) == 4


def test_folder_of_scenes_with_a_sensor_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    _tiny(scenes / "site0.mat", peak=4000, seed=0)
    # site1 as a GeoTIFF pair (NAME_ms.tif + NAME_pan.tif), the same pixels as a .mat would hold
    m1 = scipy.io.loadmat(_tiny(tmp_path / "site1.mat", peak=4000, seed=1))
    ms_geo = {"crs": "EPSG:32633", "transform": (500000.0, 2.0, 0.0, 5000000.0, 0.0, -2.0)}
    pan_geo = {"crs": "EPSG:32633", "transform": (500000.0, 0.5, 0.0, 5000000.0, 0.0, -0.5)}
    write_geotiff(scenes / "site1_ms.tif", m1["I_MS_LR"], ms_geo, np.uint16)
    write_geotiff(scenes / "site1_pan.tif", m1["I_PAN"], pan_geo, np.uint16)
    sensor = tmp_path / "mysat.yaml"
    sensor.write_text("name: MySat\nms_gnyq: [0.31, 0.32, 0.33, 0.34]\npan_gnyq: 0.2\nbits: 12\n", encoding="utf-8")
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "simulate", "-i", scenes, "--sensor", sensor, "-o", out, "--patch", 16, "--stride", 16,
                          "--split", "0.5,0.25,0.25", "--no-progress")  # fmt: skip
    assert rc == 0, err
    card = json.loads((out / "data_card.json").read_text())
    assert card["counts"] == {"train": 4, "valid": 2, "test": 2} and len(card["sources"]) == 2
    assert card["mtf_gains"] == {"ms": [0.31, 0.32, 0.33, 0.34], "pan": 0.2} and card["max_dn"] == 4095.0
    assert card["train_overrides"]["data.sensor"] == str(sensor.absolute())
    mine = Sensor("MySat", (0.31, 0.32, 0.33, 0.34), 0.2, 12, ("a", "b", "c", "d"), (2, 1, 0))
    sets = {s: _read(out / f"{s}.h5") for s in SPLITS}
    assert [Path(src["file"]).name for src in card["sources"]] == ["site0.mat", "site1_ms.tif"]
    assert Path(card["sources"][1]["pan_file"]).name == "site1_pan.tif" and len(card["sources"][1]["pan_sha256"]) == 64
    for k, m in enumerate((scipy.io.loadmat(scenes / "site0.mat"), m1)):
        with jax.enable_x64(True):
            lrms = np.asarray(wald_degrade(jnp.asarray(m["I_MS_LR"], jnp.float64), jnp.asarray(m["I_PAN"][..., None], jnp.float64), mine, 4)[0])
        for d in sets.values():
            for i, (s, r, c) in enumerate(d["origin"]):
                if s == k:
                    np.testing.assert_allclose(_hwc(d["ms"][i]), lrms[r // 4 : r // 4 + 4, c // 4 : c // 4 + 4], rtol=0, atol=TOL)
    assert f"--config.data.sensor={sensor.absolute()}" in stdout

"""MHIF through load_scene, the method API and the CLI: CAVE / HISR / Paris / patch-array layouts,
``pansharp train`` (INFN ``:smoke``) -> ``fuse --ckpt`` -> ``eval``, ``compare`` of the classical
MHIF baselines, all scored with the MHIF convention (equal to ``evaluate_mhif`` called directly)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from pansharp_jax.classical import mhif as classical_mhif
from pansharp_jax.cli import main
from pansharp_jax.cli._common import evaluate
from pansharp_jax.data import hsi
from pansharp_jax.data.io import load_scene
from pansharp_jax.data.pipeline import build_sources
from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.errors import InputError
from pansharp_jax.methods import resolve
from pansharp_jax.metrics.mhif import evaluate_mhif
from pansharp_jax.models import registry
from pansharp_jax.train.restore import restore_params

REPO = Path(__file__).resolve().parents[1]
FOOD = "hs/cave_fake_and_real_food_201.mat"
MHIF_KEYS = {"PSNR", "SAM", "ERGAS", "SSIM"}


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _write_hisr(path: Path, n: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    d = {"GT": rng.uniform(0, 1, (n, 6, 16, 16)), "LRHSI": rng.uniform(0, 1, (n, 6, 4, 4)), "RGB": rng.uniform(0, 1, (n, 3, 16, 16))}
    d["HSI_up"] = d["GT"] * 0.5
    with h5py.File(path, "w") as f:
        for k, v in d.items():
            f[k] = v.astype(np.float32)
    return d


def test_load_scene_recognises_mhif_layouts(data_dir: Path, tmp_path: Path) -> None:
    s = load_scene(FOOD)  # CAVE: simulated at ratio 4 (zsl Gaussian, Nikon SRF)
    raw = scipy.io.loadmat(data_dir / FOOD)["msi"][:200, :200].astype(np.float64)
    srf = scipy.io.loadmat(data_dir / "hs" / "nikon_d700_srf_31x3.mat")["R"].astype(np.float64)
    assert s.task == "mhif" and s.ratio == 4 and s.lrms.shape == (50, 50, 31) and s.bits == 16
    np.testing.assert_allclose(s.gt, raw)
    np.testing.assert_allclose(s.pan, raw @ (srf / srf.sum(0)), rtol=1e-10)
    assert "ratio" in s.assumed and load_scene(FOOD, ratio=8).lrms.shape == (25, 25, 31)
    paris = load_scene("hs/paris_hyperion_ali_hs_ms.mat")
    assert paris.task == "mhif" and paris.pan.shape == (72, 72, 9) and paris.ratio == 3
    assert load_scene("hs/paris_hyperion_ali_hs_pan.mat").gt is None
    d = _write_hisr(tmp_path / "test_cave.h5")
    h = load_scene(tmp_path / "test_cave.h5", index=2)
    assert h.task == "mhif" and h.ratio == 4
    np.testing.assert_allclose(h.pan, d["RGB"][2].transpose(1, 2, 0), rtol=1e-6)
    a = hsi.mhif_patches([raw[:64, :64]], srf, ratio=4, patch=32, stride=32)
    np.savez(tmp_path / "patches.npz", **a)
    p = load_scene(tmp_path / "patches.npz", index=3)
    assert p.task == "mhif" and p.name == "patches[3]" and p.pan.shape == (32, 32, 3)
    np.testing.assert_allclose(p.gt, a["gt"][3], rtol=1e-6)
    assert load_scene("rr/wv3_cdif.mat").task == "pansharpening"


def test_hisr_data_kind(tmp_path: Path) -> None:
    d = _write_hisr(tmp_path / "train.h5")
    train, val, info = build_sources({"kind": "hisr", "train": str(tmp_path / "train.h5"), "val": str(tmp_path / "train.h5"), "ratio": 4})
    b = train.get_batch([1, 2])
    assert len(train) == 3 and val is not None and info.ratio == 4
    assert b["pan"].shape == (2, 16, 16, 3) and b["lrms"].shape == (2, 4, 4, 6)
    np.testing.assert_allclose(b["lms"][1], d["HSI_up"][2].transpose(1, 2, 0), rtol=1e-6)


def test_train_smoke_then_fuse_and_eval(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("make_cave_patches", REPO / "experiments" / "make_cave_patches.py")
    make = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(make)  # type: ignore[union-attr]
    paths = make.make(tmp_path / "data", 4)
    with np.load(paths["train"]) as z:
        assert z["lrms"].shape == (49, 16, 16, 31) and z["pan"].shape == (49, 64, 64, 3)
    work = tmp_path / "infn"
    rc, out, err = run(
        capsys, "train", "--config", f"{REPO / 'configs' / 'infn_cave_x4.py'}:smoke", f"--config.data.root={tmp_path / 'data'}",
        "--config.steps=2", "--config.data.val=", "--config.logging.console=False", "--workdir", work,
    )  # fmt: skip
    assert rc == 0, err
    product = tmp_path / "fused.npz"
    rc, out, err = run(capsys, "fuse", "--method", "infn", "--ckpt", work, "-i", FOOD, "--ratio", "4", "-o", product)
    assert rc == 0, err
    fused = np.load(product)["fused"]
    scene = load_scene(FOOD)
    r = restore_params(work)
    module = registry.build_model(r.model_config)
    lr, guide = jnp.asarray(scene.lrms[None], jnp.float32), jnp.asarray(scene.pan[None], jnp.float32)
    ref = np.clip(np.asarray(module.apply({"params": r.params}, lr, guide, imresize_bicubic(lr, 4)))[0], 0, 1)
    np.testing.assert_allclose(fused, ref, atol=2e-5)
    rc, out, err = run(capsys, "eval", "-f", product, "-i", FOOD, "--json", tmp_path / "m.json")
    assert rc == 0, err
    got = json.loads((tmp_path / "m.json").read_text())["metrics"]
    want = evaluate_mhif(fused.astype(np.float64), scene.gt, ratio=4)
    assert set(got) == MHIF_KEYS
    for k in MHIF_KEYS:
        assert got[k] == pytest.approx(want[k], rel=1e-9), k


def test_compare_classical_mhif_baselines(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    rc, _, err = run(capsys, "compare", "-i", FOOD, "--methods", "bicubic,glp_hs", "--ratio", "4", "-o", out, "--no-progress", "--zoom", "0")
    assert rc == 0, err
    rows = {r["method"]: r["metrics"] for r in json.loads((out / "metrics.json").read_text())["results"]}
    scene = load_scene(FOOD)
    for name, fn in (("bicubic", classical_mhif.bicubic), ("glp_hs", classical_mhif.glp_hs)):
        with jax.enable_x64(True):
            fused = np.clip(np.asarray(fn(None, scene.lrms, scene.pan, ratio=4)), 0, 1)
        want = evaluate_mhif(fused, scene.gt, ratio=4)
        assert set(rows[name]) == MHIF_KEYS
        for k in MHIF_KEYS:
            assert rows[name][k] == pytest.approx(want[k], rel=1e-7, abs=1e-9), (name, k)
    assert rows["glp_hs"]["PSNR"] > rows["bicubic"]["PSNR"] + 5  # the RGB guide adds detail


def test_mhif_method_errors(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for kwargs in ({}, {"weights": "x.pth"}):
        with pytest.raises(InputError, match="ckpt"):
            resolve("feinfn", **kwargs)
    with pytest.raises(InputError, match="classical"):
        resolve("glp_hs", ckpt="runs/x")
    scene = load_scene(FOOD)
    with pytest.raises(InputError, match="MHIF"):
        evaluate(scene.gt, scene, "fr")
    rc, _, err = run(capsys, "fuse", "-m", "infn", "-i", FOOD, "-o", "never.npz")
    assert rc == 2 and "--ckpt" in err and len(err.strip().splitlines()) == 1


def test_guided_mamba_checkpoints_go_to_the_mhif_runner(tmp_path: Path) -> None:
    """FusionMamba trained with an RGB guide fuses MHIF arrays through the MHIF runner (equal to the
    module's own apply); a 1-band run is left to the pan-sharpening source."""
    from pansharp_jax.methods.mhif import MhifSource, _guided_checkpoint, mhif_from_params
    from pansharp_jax.train.workdir import write_config

    cfg = registry.default_config("fusionmamba")
    cfg.update(bands=5, guide_bands=3, dim=8)
    for guide, want in ((3, True), (1, False)):
        write_config(tmp_path / f"g{guide}", {"model": {**cfg.to_dict(), "guide_bands": guide}})
        assert _guided_checkpoint(tmp_path / f"g{guide}") is want
    assert not _guided_checkpoint(tmp_path / "missing") and not _guided_checkpoint(None)
    assert MhifSource().resolve("fusionmamba", {"ckpt": str(tmp_path / "g1")}) is None
    rng = np.random.default_rng(0)
    lrms, guide = rng.uniform(0, 1, (1, 4, 4, 5)), rng.uniform(0, 1, (1, 16, 16, 3))
    module = registry.build_model(cfg)
    lr, gd = jnp.asarray(lrms, jnp.float32), jnp.asarray(guide, jnp.float32)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), lr, gd, imresize_bicubic(lr, 4)))["params"]
    params = jax.tree.map(lambda t: jnp.asarray(rng.normal(0.0, 0.1, t.shape), t.dtype), shapes)  # no init compile
    method = mhif_from_params("fusionmamba", params, cfg)
    got = method.fuse_arrays(lrms, guide, ratio=4)
    ref = np.clip(np.asarray(module.apply({"params": params}, lr, gd, imresize_bicubic(lr, 4))), 0, 1)
    assert got.shape == (1, 16, 16, 5)
    np.testing.assert_allclose(got, ref, atol=1e-5)

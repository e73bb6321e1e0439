"""``pansharp train`` and learned methods in ``pansharp fuse / compare`` (``--weights``, ``--ckpt``).

A tiny FusionNet (4 channels, 1 residual block) is trained for a few steps on synthetic
PanCollection files through the CLI; its workdir is then run with ``--ckpt`` and compared with
:func:`pansharp_jax.models.fuse` on the restored parameters. The released WV3 FusionNet runs on
the toolbox's ``wv3_cdif`` scene with ``--weights`` and must beat EXP (plain interpolation).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from pansharp_jax.cli import main
from pansharp_jax.data.demo import write_demo_scene
from pansharp_jax.models import fuse
from pansharp_jax.train.restore import restore_params
from pansharp_jax.train.testing import write_synthetic_panc

STEPS = 6

# A config file as users write them: get_config(arg) -> ConfigDict; the arg is the step count.
CONFIG = """
from pansharp_jax.train.testing import tiny_config


def get_config(arg=None):
    c = tiny_config({train!r}, {val!r}, steps=int(arg or 20), batch_size=4)
    c.eval_every = 3
    return c
"""


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("pansharp: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("pansharp: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("train_cfg")
    train = write_synthetic_panc(d / "train.h5", 16, seed=0)
    val = write_synthetic_panc(d / "val.h5", 4, seed=1)
    path = d / "tiny.py"
    path.write_text(CONFIG.format(train=str(train.absolute()), val=str(val.absolute())), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    workdir = tmp_path_factory.mktemp("runs") / "tiny"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["train", "--config", f"{config_file}:{STEPS}", "--workdir", str(workdir), "--no-wandb",
                   "--config.optim.lr=0.01"])  # fmt: skip
    return workdir, rc, buf.getvalue()


@pytest.fixture(scope="module")
def demo_rr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(tmp_path_factory.mktemp("scenes") / "demo_rr.npz", "rr")


# --- pansharp train -------------------------------------------------------------------------
def test_train_writes_checkpoints_with_overrides(trained: tuple[Path, int, str]) -> None:
    workdir, rc, out = trained
    assert rc == 0, out
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == STEPS and 3 in steps  # FILE:ARG reached get_config; evaluated at 3 and 6
    assert f"trained fusionnet to step {STEPS}" in out and "best ERGAS" in out
    restored = restore_params(workdir, prefer="latest")
    assert restored.step == STEPS
    assert restored.config["optim"]["lr"] == 0.01  # the --config.optim.lr override was applied
    assert restored.config["steps"] == STEPS


def test_train_refuses_used_workdir_and_bad_overrides(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, int, str], config_file: Path, tmp_path: Path
) -> None:
    workdir, _, _ = trained
    rc, _, err = run(capsys, "train", "--config", f"{config_file}:{STEPS}", "--workdir", workdir, "--no-wandb")
    assert rc == 2 and "--resume" in _one_error_line(err)

    fresh = tmp_path / "fresh"
    rc, _, err = run(capsys, "train", "--config", config_file, "--workdir", fresh, "--config.optim.lrr=1e-3")
    line = _one_error_line(err)
    assert rc == 2 and "unknown config key 'optim.lrr'" in line and "optim.lr" in line
    rc, _, err = run(capsys, "train", "--config", config_file, "--workdir", fresh, "--config.steps=many")
    assert rc == 2 and "config.steps" in _one_error_line(err)
    rc, _, err = run(capsys, "train", "--config", config_file, "--workdir", fresh, "--config.steps")
    assert rc == 2 and "--config.KEY=VALUE" in _one_error_line(err)
    rc, _, err = run(capsys, "train", "--config", tmp_path / "missing.py", "--workdir", fresh)
    assert rc == 2 and "config file not found" in _one_error_line(err)
    assert not (fresh / "checkpoints").exists() or not any((fresh / "checkpoints").iterdir())
    rc, _, err = run(capsys, "fuse", "--method", "gsa", "--input", "x.npz", "--out", "y.npz", "--config.steps=3")
    assert rc == 2 and "pansharp train" in _one_error_line(err)


# --- --ckpt -----------------------------------------------------------------------------------
def test_fuse_ckpt_equals_models_fuse_with_restored_params(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, int, str], demo_rr: Path, tmp_path: Path
) -> None:
    workdir, _, _ = trained
    out = tmp_path / "fused.npz"
    rc, stdout, err = run(capsys, "fuse", "--method", "fusionnet", "--ckpt", workdir, "--input", demo_rr, "--out", out)
    assert rc == 0, err
    assert "FusionNet" in stdout
    restored = restore_params(workdir)  # best by validation ERGAS (the run evaluated at 3 and 6)
    assert restored.which == "best" and restored.step in (3, STEPS)
    with np.load(demo_rr) as z:
        lrms, pan = z["lrms"].astype(np.float32), z["pan"].astype(np.float32)
    expected = np.asarray(fuse(restored.params, lrms, pan, model_config=restored.model_config))
    with np.load(out) as z:
        got = z["fused"]
    assert got.shape == (256, 256, 4)
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_ckpt_runs_full_resolution_scene_of_any_size(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, int, str], tmp_path: Path
) -> None:
    workdir, _, _ = trained
    rng = np.random.default_rng(3)
    scene = tmp_path / "odd.mat"  # 13 x 21 MS, 52 x 84 PAN, no GT
    scipy.io.savemat(scene, {"I_MS_LR": rng.uniform(200, 1500, (13, 21, 4)), "I_PAN": rng.uniform(200, 1500, (52, 84))})
    out = tmp_path / "odd_fused.npz"
    rc, _, err = run(capsys, "fuse", "--method", "fusionnet", "--ckpt", workdir, "--input", scene, "--sensor", "QB",
                     "--out", out)  # fmt: skip
    assert rc == 0, err
    with np.load(out) as z:
        assert z["fused"].shape == (52, 84, 4) and np.isfinite(z["fused"]).all()


# --- --weights (released WV3 FusionNet) -------------------------------------------------------
def test_released_weights_beat_exp_on_wv3(
    capsys: pytest.CaptureFixture[str], data_dir: Path, weights_dir: Path, tmp_path: Path
) -> None:
    scene, weights = data_dir / "rr" / "wv3_cdif.mat", weights_dir / "fusionnet" / "WV3" / "fusionnet.pth"
    if not scene.is_file() or not weights.is_file():
        pytest.skip("wv3_cdif.mat or the released WV3 FusionNet weights are missing")
    fused = tmp_path / "fnet.mat"
    rc, _, err = run(capsys, "fuse", "--method", "FusionNet", "--weights", weights, "--input", scene, "--out", fused)
    assert rc == 0, err
    rc, _, err = run(capsys, "eval", "--fused", fused, "--input", scene, "--json", tmp_path / "fnet.json")
    assert rc == 0, err
    fnet = json.loads((tmp_path / "fnet.json").read_text())["metrics"]

    cmp_dir = tmp_path / "cmp"
    rc, _, err = run(capsys, "compare", "--input", scene, "--methods", "exp,fusionnet", "--weights", weights,
                     "--out", cmp_dir, "--no-progress")  # fmt: skip
    assert rc == 0, err
    by = {r["method"]: r["metrics"] for r in json.loads((cmp_dir / "metrics.json").read_text())["results"]}
    assert by["fusionnet"]["ERGAS"] < 0.7 * by["exp"]["ERGAS"], by
    assert by["fusionnet"]["Q2n"] > by["exp"]["Q2n"] + 0.1, by
    # the .mat round trip (DN float64) scores like the in-memory product
    assert fnet["ERGAS"] == pytest.approx(by["fusionnet"]["ERGAS"], rel=1e-5)


# --- errors -------------------------------------------------------------------------------------
def test_learned_method_errors(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, int, str], demo_rr: Path, tmp_path: Path
) -> None:
    workdir, _, _ = trained
    out = tmp_path / "f.npz"
    base = ("--input", demo_rr, "--out", out)

    rc, _, err = run(capsys, "fuse", "--method", "fusionnet", *base)
    line = _one_error_line(err)
    assert rc == 2 and "--weights" in line and "--ckpt" in line
    rc, _, err = run(capsys, "fuse", "--method", "fusionnet", "--weights", tmp_path / "none.pth", *base)
    assert rc == 2 and "not found" in _one_error_line(err)
    rc, _, err = run(capsys, "fuse", "--method", "fusionnet", "--weights", "w.pth", "--ckpt", workdir, *base)
    assert rc == 2 and "not both" in _one_error_line(err)
    rc, _, err = run(capsys, "fuse", "--method", "gsa", "--ckpt", workdir, *base)
    assert rc == 2 and "classical" in _one_error_line(err)
    rc, _, err = run(capsys, "fuse", "--method", "fusionnet", "--ckpt", tmp_path, *base)
    assert rc == 2 and "no checkpoint" in _one_error_line(err)
    rc, _, err = run(capsys, "fuse", "--method", "pannet", "--ckpt", workdir, *base)
    assert rc == 2 and "fusionnet model, not pannet" in _one_error_line(err)
    rc, _, err = run(capsys, "compare", "--methods", "exp,gsa", "--ckpt", workdir, "--input", demo_rr, "--out", tmp_path / "c")
    assert rc == 2 and "no method in the list is a learned model" in _one_error_line(err)
    rc, _, err = run(capsys, "compare", "--methods", "fusionnet,pnn", "--ckpt", workdir, "--input", demo_rr, "--out", tmp_path / "c")
    assert rc == 2 and "say which method it is for" in _one_error_line(err)
    assert not out.exists()

    # band count: the 4-band checkpoint on an 8-band scene
    rng = np.random.default_rng(0)
    eight = tmp_path / "eight.mat"
    scipy.io.savemat(eight, {"I_MS_LR": rng.uniform(200, 1500, (16, 16, 8)), "I_PAN": rng.uniform(200, 1500, (64, 64))})
    rc, _, err = run(capsys, "fuse", "--method", "fusionnet", "--ckpt", workdir, "--input", eight, "--sensor", "WV3",
                     "--out", out)  # fmt: skip
    line = _one_error_line(err)
    assert rc == 2 and "with 4 bands" in line and "has 8" in line
    assert not out.exists()


def test_released_weights_band_mismatch(
    capsys: pytest.CaptureFixture[str], weights_dir: Path, demo_rr: Path, tmp_path: Path
) -> None:
    weights = weights_dir / "fusionnet" / "WV3" / "fusionnet.pth"
    if not weights.is_file():
        pytest.skip("released WV3 FusionNet weights missing")
    rc, _, err = run(capsys, "fuse", "--method", "fusionnet", "--weights", weights, "--input", demo_rr,
                     "--out", tmp_path / "f.npz")  # fmt: skip
    line = _one_error_line(err)
    assert rc == 2 and "with 8 bands" in line and "has 4" in line

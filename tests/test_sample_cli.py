"""``pansharp sample`` and the generative hook of the method API: a trained SBM smoke run sampled
to .npz and .tif (mean + std), deterministic methods refused, Method.sample wired to the
model's sampler with the documented keys."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from pansharp_jax.classical import upsample_ms
from pansharp_jax.cli.main import main
from pansharp_jax.data.scene import Scene
from pansharp_jax.errors import InputError
from pansharp_jax.generative import sb_matching as sb
from pansharp_jax.methods import from_params, resolve
from pansharp_jax.models import registry

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sbm_wv2_real.py"


def tiny_scene_file(path: Path) -> Path:
    rng = np.random.default_rng(0)
    ms = rng.integers(100, 1000, (8, 8, 4)).astype(np.uint16)
    pan = rng.integers(100, 1000, (32, 32)).astype(np.uint16)
    scipy.io.savemat(path, {"I_MS_LR": ms, "I_PAN": pan})
    return path


def test_deterministic_methods_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = tiny_scene_file(tmp_path / "s.mat")
    out = tmp_path / "f.npz"
    rc = main(["sample", "--method", "gsa", "--steps", "4", "--samples", "3", "--input", str(scene), "--out", str(out), "--sensor", "QB"])
    err = capsys.readouterr().err
    assert rc == 2 and "deterministic" in err and "generative" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    rc = main(["sample", "--method", "gsa", "--samples", "0", "--input", str(scene), "--out", str(out)])
    assert rc == 2 and "--samples" in capsys.readouterr().err
    with pytest.raises(InputError, match="generative"):
        resolve("gsa").sample(Scene(lrms=np.full((4, 4, 4), 0.5), pan=np.full((16, 16, 1), 0.5)))


def test_method_sample_calls_the_model_sampler_with_the_seed_keys() -> None:
    cfg = registry.default_config("sbm")
    cfg.update(bands=4, base=8, mults=(1, 2), eval_steps=1, eval_samples=1)
    model = registry.build_model(cfg)
    r = np.random.default_rng(1)
    scene = Scene(lrms=r.uniform(0.2, 0.8, (4, 4, 4)), pan=r.uniform(0.2, 0.8, (16, 16, 1)), ratio=4)
    lrms = np.asarray(scene.lrms, np.float32)[None]
    pan = np.asarray(scene.pan, np.float32)[None]
    lms = np.asarray(jax.jit(upsample_ms, static_argnums=1)(lrms, 4))
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), lrms, pan, lms)["params"]  # random params, no init to compile
    params = jax.tree_util.tree_map(lambda s: jnp.asarray(0.2 * r.standard_normal(s.shape), s.dtype), shapes)
    method = from_params("sbm", params, cfg)
    assert method.generative
    mean, std = method.sample(scene, samples=2, steps=2, rng=4)
    x0_fn, cond = sb.unet_x0_fn(model.unet()), np.concatenate([lms, pan], -1)  # the documented keys and bridge
    want_mean, want_std = jax.jit(lambda k: sb.sample_many(x0_fn, params["net"], cond, lms, k, model.bridge(), samples=2, steps=2))(
        jax.random.PRNGKey(4)
    )
    assert mean.shape == std.shape == (16, 16, 4)
    np.testing.assert_allclose(mean, np.asarray(want_mean)[0], atol=1e-5)
    np.testing.assert_allclose(std, np.asarray(want_std)[0], atol=1e-5)
    assert std.max() > 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step smoke run of ``configs/sbm_wv2_real.py`` (needs ``PANSHARP_DATA``)."""
    import os

    if not os.environ.get("PANSHARP_DATA"):
        pytest.skip("PANSHARP_DATA is unset: the end-to-end sample test needs fr/wv2_pnn.mat and rr/wv3_cdif.mat")
    work = tmp_path_factory.mktemp("sbm") / "run"
    tiny = ["--config.steps=2", "--config.eval_every=2", "--config.checkpoint.every=2", "--config.log_every=1",
            "--config.eval.max_examples=1", "--config.eval.batch_size=1"]  # fmt: skip
    assert main(["train", "--config", f"{CONFIG}:smoke", "--workdir", str(work), *tiny]) == 0
    return work


@pytest.mark.usefixtures("data_dir")
def test_train_then_sample_npz_and_tif(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sample", "--method", "sbm", "--ckpt", str(trained), "--steps", "4", "--samples", "3", "--input", "rr/wv3_cdif.mat"]
    f = tmp_path / "f.npz"
    capsys.readouterr()
    assert main([*args, "--out", str(f)]) == 0
    stdout = capsys.readouterr().out
    assert "3 draws x 4 steps" in stdout and str(f) in stdout
    with np.load(f) as z:
        fused, std = z["fused"], z["std"]
        assert int(z["samples"]) == 3 and int(z["steps"]) == 4 and int(z["seed"]) == 0
    assert fused.shape == std.shape == (256, 256, 8) and fused.dtype == std.dtype == np.float32
    assert fused.min() >= 0.0 and fused.max() <= 1.0  # clipped like fuse products
    assert std.min() >= 0.0 and std.max() > 0.0

    tif = tmp_path / "g.tif"
    assert main([*args, "--out", str(tif)]) == 0
    std_tif = tmp_path / "g_std.tif"
    assert tif.is_file() and std_tif.is_file()
    import rasterio

    with rasterio.open(tif) as src:
        dn = np.moveaxis(src.read(), 0, -1)
        assert src.dtypes[0] == "uint16" and src.count == 8
    with rasterio.open(std_tif) as src:
        std2 = np.moveaxis(src.read(), 0, -1)
        assert src.dtypes[0] == "float32" and src.count == 8
    np.testing.assert_allclose(std2, std, atol=1e-6)  # same seed: the same draws
    np.testing.assert_allclose(dn, np.rint(fused.astype(np.float64) * 2047), atol=1)
    capsys.readouterr()
    assert main([*args, "--out", str(tif)]) == 2  # exists: refused before any work
    assert "--overwrite" in capsys.readouterr().err

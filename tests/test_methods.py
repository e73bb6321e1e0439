"""The method API: resolution, products clipped by default, receptive fields, several
learned methods in one list."""

from __future__ import annotations

import importlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.data.scene import Scene
from pansharp_jax.errors import InputError
from pansharp_jax.methods import Method, finish_product, from_params, resolve, resolve_many
from pansharp_jax.methods.receptive import receptive_radius
from pansharp_jax.models import registry


def _box(x: jax.Array, k: int) -> jax.Array:
    """k x k box sum over the spatial axes of (N, H, W, C), zero padding ('SAME')."""
    c = x.shape[-1]
    kernel = jnp.ones((k, k, 1, c), x.dtype)
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


@pytest.mark.parametrize(("k_pan", "k_ms"), [(5, 1), (9, 3), (1, 5)])
def test_receptive_radius_of_box_filters(k_pan: int, k_ms: int) -> None:
    ratio = 4

    def apply(lrms: jax.Array, pan: jax.Array) -> jax.Array:
        ms = _box(lrms, k_ms)  # k_ms x k_ms LR pixels, then nearest upsampling
        up = jnp.repeat(jnp.repeat(ms, ratio, 1), ratio, 2)
        return up + _box(pan, k_pan)

    # By hand: the PAN box reaches (k_pan - 1) / 2 PAN px; an LR pixel (k_ms - 1) / 2 LR px
    # away covers PAN pixels up to ratio * ((k_ms - 1) / 2 + 1) - 1 - (c mod ratio) away.
    c = 16 * ratio // 2  # the probe's centre pixel (PAN), first probe side 16 LR px
    half = (k_ms - 1) // 2
    lr_c = c // ratio
    far = max(abs((lr_c + half + 1) * ratio - 1 - c), abs((lr_c - half) * ratio - c))
    expected = max((k_pan - 1) // 2, far)
    assert receptive_radius(apply, bands=3, ratio=ratio) == expected


def test_receptive_radius_of_a_global_operation_is_none() -> None:
    def apply(lrms: jax.Array, pan: jax.Array) -> jax.Array:
        return jnp.repeat(jnp.repeat(lrms, 4, 1), 4, 2) * jnp.mean(pan)

    assert receptive_radius(apply, bands=2, ratio=4, sides=(8, 16)) is None


def test_fuse_clips_by_default_and_no_clip_keeps_raw_values() -> None:
    def wild(lrms: np.ndarray, pan: np.ndarray, sensor: object, r: int, lms: object = None) -> np.ndarray:
        out = np.repeat(np.repeat(lrms, r, 1), r, 2) * 3.0 - 1.0
        out[0, 0, 0, 0] = np.nan
        return out

    m = Method("wild", "Wild", wild, "test")
    rng = np.random.default_rng(0)
    scene = Scene(lrms=rng.uniform(0, 1, (4, 4, 3)), pan=rng.uniform(0, 1, (16, 16, 1)), ratio=4)
    raw = m.fuse(scene, clip=False)
    assert np.isnan(raw[0, 0, 0]) and raw[np.isfinite(raw)].min() < 0 and raw[np.isfinite(raw)].max() > 1
    out = m.fuse(scene)
    assert out.min() >= 0.0 and out.max() <= 1.0 and np.isfinite(out).all()
    expected = np.clip(np.repeat(np.repeat(scene.lrms, 4, 0), 4, 1) * 3.0 - 1.0, 0, 1)
    expected[0, 0, 0] = 0.0
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(finish_product(np.array([np.inf, -np.inf, 0.5])), [1.0, 0.0, 0.5])


def test_resolve_names_options_and_errors() -> None:
    assert resolve("MTF-GLP-HPM").name == "mtf_glp_hpm"
    assert resolve("bt-h").label == "BT-H"
    with pytest.raises(InputError, match="classical"):
        resolve("gsa", weights="w.pth")
    with pytest.raises(InputError, match="unknown method 'nope'.*gsa"):
        resolve("nope")
    with pytest.raises(InputError, match="learned model"):
        resolve("fusionnet")
    with pytest.raises(InputError, match="not both"):
        resolve("fusionnet", weights="a.pth", ckpt="b")


def test_resolve_many_assigns_weights_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, object, object]] = []
    sources = importlib.import_module("pansharp_jax.methods.sources")
    real = sources.resolve

    def spy(name: str, *, weights: object = None, ckpt: object = None, **kw: object) -> Method:
        seen.append((name, weights, ckpt))
        if weights is None and ckpt is None:
            return real(name)
        return Method(name, name, lambda *a, **k: None, "test")

    monkeypatch.setattr(sources, "resolve", spy)
    resolve_many("gsa,fusionnet,cannet", weights=["fusionnet=A.pth,cannet=B.pth"])
    assert seen == [("gsa", None, None), ("fusionnet", "A.pth", None), ("cannet", "B.pth", None)]
    seen.clear()
    resolve_many("exp,fusionnet", weights=["only.pth"])  # one learned method: a bare path is its
    assert seen[-1] == ("fusionnet", "only.pth", None)
    seen.clear()
    resolve_many("fusionnet,cannet", weights=["fusionnet=A.pth"], ckpts=["cannet=runs/c"])
    assert seen == [("fusionnet", "A.pth", None), ("cannet", None, "runs/c")]
    with pytest.raises(InputError, match="say which method"):
        resolve_many("fusionnet,cannet", weights=["A.pth"])
    with pytest.raises(InputError, match="not a learned method"):
        resolve_many("gsa,fusionnet", weights=["gsa=A.pth"])
    with pytest.raises(InputError, match="no method in the list is a learned model"):
        resolve_many("gsa,exp", weights=["A.pth"])
    with pytest.raises(InputError, match="listed twice"):
        resolve_many("gsa,GSA")


def test_from_params_method_equals_the_network_and_measures_its_field() -> None:
    cfg = registry.default_config("pnn")
    cfg.bands = 4
    module = registry.build_model(cfg)
    rng = np.random.default_rng(1)
    lrms = rng.uniform(0.1, 0.9, (1, 8, 8, 4)).astype(np.float32)
    pan = rng.uniform(0.1, 0.9, (1, 32, 32, 1)).astype(np.float32)
    from pansharp_jax.classical import upsample_ms

    lms = upsample_ms(lrms, 4)
    params = module.init(jax.random.PRNGKey(0), lrms, pan, lms, train=False)["params"]
    m = from_params("pnn", params, cfg)
    direct = np.asarray(module.apply({"params": params}, lrms, pan, lms, train=False))
    np.testing.assert_allclose(m.fuse_arrays(lrms, pan, ratio=4, clip=False), direct, atol=1e-6)
    # PNN: 9x9, 5x5, 5x5 convolutions -> a PAN pixel 4 + 2 + 2 = 8 px away still counts;
    # the interp23tap upsampling of the LRMS reaches further, so the margin is at least that
    assert m.margin(4) >= 8 + 4 and m.margin(4) % 4 == 0
    with pytest.raises(InputError, match="expects an MS with 4 bands"):
        m.fuse_arrays(np.zeros((8, 8, 3)), np.zeros((32, 32)), ratio=4)


def test_released_weights_warn_on_another_sensor(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    weights = Path(__import__("os").environ.get("PANSHARP_WEIGHTS", "")) / "fusionnet" / "WV3" / "fusionnet.pth"
    data = Path(__import__("os").environ.get("PANSHARP_DATA", "")) / "fr" / "wv2_pnn.mat"
    if not weights.is_file() or not data.is_file():
        pytest.skip("needs PANSHARP_WEIGHTS (fusionnet/WV3) and PANSHARP_DATA (fr/wv2_pnn.mat)")
    from pansharp_jax.cli import main
    from pansharp_jax.data.io import load_scene

    scene = load_scene(data)
    crop = tmp_path / "wv2_crop.npz"
    np.savez(crop, lrms=scene.lrms[:32, :32], pan=scene.pan[:128, :128, 0], sensor=np.array("WV2"))
    rc = main(["fuse", "-m", "fusionnet", "--weights", str(weights), "-i", str(crop), "-o", str(tmp_path / "f.npz")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "trained on WV3" in err and "WV2" in err

"""CrossDiff (pansharp_jax.generative.crossdiff): layouts of the official sizes and the cross-sensor
band maps, the documented t = 50 features and keys, condition dropout, the sampler hook, and the
pretext loss falling on held-out full-resolution WV2 patches."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.generative import crossdiff as cd
from pansharp_jax.generative import diffusion
from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_config
from pansharp_jax.train.init_from import check_same_layout
from pansharp_jax.train.optim import freeze_labels

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "crossdiff_wv2_real.py"


def _ex(bands: int, side: int = 16, n: int = 1) -> tuple[jax.ShapeDtypeStruct, ...]:
    f = jnp.float32
    return (jax.ShapeDtypeStruct((n, side // 4, side // 4, bands), f), jax.ShapeDtypeStruct((n, side, side, 1), f),
            jax.ShapeDtypeStruct((n, side, side, bands), f))  # fmt: skip


def _shapes(model_cfg, side: int = 16):  # noqa: ANN001, ANN202
    m = cd.build_crossdiff(model_cfg)
    return jax.eval_shape(lambda a, b, c: m.init(jax.random.PRNGKey(0), a, b, c), *_ex(int(model_cfg.bands), side))["params"]


def _fill(shapes, seed: int = 0):  # noqa: ANN001, ANN202
    """Test-side params: N(0, 1/fan_in) kernels, small random biases, unit scales."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):  # noqa: ANN001, ANN202
        name = str(path[-1].key)
        if name == "scale":
            return np.ones(s.shape, np.float32)
        if name == "bias":
            return (0.05 * rng.standard_normal(s.shape)).astype(np.float32)
        fan_in = int(np.prod(s.shape[:-1])) or 1
        return (rng.standard_normal(s.shape) / math.sqrt(fan_in)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def _tiny(stage: str = "pretext", **kw):  # noqa: ANN003, ANN202
    cfg = registry.default_config("crossdiff")
    cfg.update(bands=4, widths=(8, 16), head_channels=8, stage=stage)
    cfg.update(**kw)
    return cfg


def _batch(n: int = 2, side: int = 16, bands: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    lms = r.uniform(0.2, 0.8, (n, side, side, bands)).astype(np.float32)
    pan = r.uniform(0.2, 0.8, (n, side, side, 1)).astype(np.float32)
    return {"lrms": lms[:, ::4, ::4], "lms": lms, "pan": pan, "gt": np.clip(lms + 0.2 * (pan - 0.5), 0, 1)}


# ----------------------------------------------------------------------------- layouts and configs
def test_official_sizes_four_levels_and_cross_sensor_layouts() -> None:
    full = registry.default_config("crossdiff")
    assert tuple(full.widths) == (32, 64, 128, 256) and (full.T, full.feature_t, full.schedule) == (1000, 50, "cosine")
    m = cd.build_crossdiff(full)
    lrms, pan, lms = _ex(8, 64, 2)
    fa, fb = jax.eval_shape(lambda a, b, c: m.init_with_output(jax.random.PRNGKey(0), a, b, c, method="features"), lms, pan,
                            jax.ShapeDtypeStruct((2,), jnp.uint32))[0]  # fmt: skip
    want = [(2, 64 // 2**i, 64 // 2**i, w) for i, w in enumerate((32, 64, 128, 256))]
    assert [f.shape for f in fa] == want and [f.shape for f in fb] == want
    # cross-sensor: a head on 4-band GeoEye-1 data takes the WV2 (8-band) pretext UNets as they are
    wv2 = load_config(f"{CONFIG}:pretext")
    ge_on_wv2 = load_config(f"{CONFIG}:head,geoeye1,enc=wv2")
    assert ge_on_wv2.model.bands == 4 and tuple(ge_on_wv2.model.band_map) == cd.WV2_TO_BGRN
    assert ge_on_wv2.init_from == "pan2ms=runs/crossdiff_wv2_pretext@pan2ms,ms2pan=runs/crossdiff_wv2_pretext@ms2pan"
    p_wv2, p_ge = _shapes(wv2.model, 32), _shapes(ge_on_wv2.model, 32)
    for unet in cd.HEAD_FROZEN:
        check_same_layout(p_wv2[unet], p_ge[unet], unet)
    assert p_ge["head"]["out"]["kernel"].shape[-1] == 4 and p_wv2["head"]["out"]["kernel"].shape[-1] == 8
    wv2_on_bgrn = load_config(f"{CONFIG}:head,enc=bgrn")
    p_w = _shapes(wv2_on_bgrn.model, 32)
    assert tuple(wv2_on_bgrn.model.band_map) == cd.BGRN_TO_WV2
    assert p_w["pan2ms"]["decoder"]["out"]["kernel"].shape[-1] == 4  # the 4-band encoders' output conv
    with pytest.raises(InputError):
        check_same_layout(p_w["pan2ms"], p_wv2["pan2ms"], "pan2ms")  # an 8-band pretext does not fit


def test_config_stages_freeze_the_documented_parts() -> None:
    pre, head = load_config(f"{CONFIG}:pretext"), load_config(f"{CONFIG}:head")
    assert (pre.model.stage, pre.data.resolution, pre.optim.frozen, pre.eval_every) == ("pretext", "full", "head", 0)
    assert (head.model.stage, head.data.resolution, head.optim.frozen) == ("head", "reduced", "pan2ms,ms2pan")
    assert head.init_from == "pan2ms=runs/crossdiff_wv2_pretext@pan2ms,ms2pan=runs/crossdiff_wv2_pretext@ms2pan"
    assert load_config(f"{CONFIG}:head,scratch").init_from == ""
    assert load_config(f"{CONFIG}:pretext,bgrn").data.scene == "fr/geoeye1_pnn.mat,fr/ikonos_pnn.mat"
    labels = freeze_labels(_shapes(head.model, 32), ("pan2ms", "ms2pan"))
    flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(labels)[0]}
    assert {k for k, v in flat.items() if v == "train"} == {k for k in flat if k.startswith("['head']")}
    for bad in ("head,bgrn", "pretext,enc=wv2", "nonsense", "head,enc=mars"):
        with pytest.raises(InputError):
            load_config(f"{CONFIG}:{bad}")
    assert cd.band_map(8, 8) == () and cd.band_map(4, 8) == (1, 2, 4, 6)
    with pytest.raises(InputError, match="band map"):
        cd.band_map(3, 8)
    with pytest.raises(InputError, match="band_map"):
        cd.build_crossdiff(_tiny(band_map=(0, 1, 2, 9)))
    with pytest.raises(InputError, match="stage"):
        cd.build_crossdiff(_tiny(stage="both"))


# ----------------------------------------------------------------------------- the documented computation
def _alpha_bar_numpy(t: int, T: int = 1000, s: float = 0.008) -> float:
    f = lambda x: math.cos((x / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return float(np.prod([1.0 - min(1.0 - f(i + 1) / f(i), 0.999) for i in range(t + 1)]))


def test_features_are_the_encoders_at_t50_of_the_documented_noise() -> None:
    cfg = _tiny("head", band_map=(3, 2, 1, 0))
    m = cd.build_crossdiff(cfg)
    params = _fill(_shapes(cfg))
    b = _batch()
    key = jax.random.PRNGKey(7)
    # NumPy inputs closed over under jit, as the trainer's init sees them
    fa, fb = jax.jit(lambda: m.apply({"params": params}, b["lms"], b["pan"], key, method="features"))()
    k_ms, k_pan = jax.random.split(key)
    ab = _alpha_bar_numpy(50)
    ms = 2.0 * b["lms"][..., ::-1] - 1.0  # the band map (3, 2, 1, 0) reverses the bands
    pan = 2.0 * b["pan"] - 1.0
    x_ms = math.sqrt(ab) * ms + math.sqrt(1 - ab) * np.asarray(jax.random.normal(k_ms, ms.shape))
    x_pan = math.sqrt(ab) * pan + math.sqrt(1 - ab) * np.asarray(jax.random.normal(k_pan, pan.shape))
    unet_a, unet_b = cd.CondUNet(4, (8, 16), 8), cd.CondUNet(1, (8, 16), 8)
    t = jnp.full((2,), 50, jnp.int32)
    want_a = unet_a.apply({"params": params["pan2ms"]}, x_ms, t, pan, method="encode")
    want_b = unet_b.apply({"params": params["ms2pan"]}, x_pan, t, ms, method="encode")
    for got, want in ((fa, want_a), (fb, want_b)):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=2e-4)
    # fusion is deterministic (the fixed feature key) and is what validation scores
    out = m.apply({"params": params}, b["lrms"], b["pan"], b["lms"])
    np.testing.assert_array_equal(out, m.apply({"params": params}, b, jax.random.PRNGKey(3), method="eval_output"))
    again = m.apply({"params": params}, b, jax.random.PRNGKey(4), method="eval_output")
    np.testing.assert_array_equal(out, again)
    assert out.shape == (2, 16, 16, 4)


def test_condition_dropout_zeroes_the_condition_per_sample() -> None:
    b = _batch()
    key = jax.random.PRNGKey(5)
    params = _fill(_shapes(_tiny()))
    k_a, k_b, _, _ = jax.random.split(key, 4)
    sched = diffusion.cosine_schedule(1000)
    ms, pan = 2.0 * b["lms"] - 1.0, 2.0 * b["pan"] - 1.0
    ua, ub = cd.CondUNet(4, (8, 16), 8), cd.CondUNet(1, (8, 16), 8)
    fa = lambda p, x, t, c: ua.apply({"params": p}, x, t, c)  # noqa: E731
    fb = lambda p, x, t, c: ub.apply({"params": p}, x, t, c)  # noqa: E731
    for p_uncond, scale in ((0.0, 1.0), (1.0, 0.0)):
        m = cd.build_crossdiff(_tiny(p_uncond=p_uncond))
        loss, aux = m.apply({"params": params}, {k: jnp.asarray(v) for k, v in b.items()}, key, method="training_loss")
        want_a = diffusion.diffusion_loss(fa, params["pan2ms"], ms, scale * pan, k_a, sched, "eps", "l2")
        want_b = diffusion.diffusion_loss(fb, params["ms2pan"], pan, scale * ms, k_b, sched, "eps", "l2")
        np.testing.assert_allclose(float(aux["p2m"]), float(want_a), rtol=1e-4)
        np.testing.assert_allclose(float(aux["m2p"]), float(want_b), rtol=1e-4)
        np.testing.assert_allclose(float(loss), float(want_a + want_b), rtol=1e-4)


def test_sampler_draws_the_t50_noise_and_pretext_samples_look_right() -> None:
    cfg = _tiny("head")
    m = cd.build_crossdiff(cfg)
    params = _fill(_shapes(cfg))
    b = _batch()
    mean, std = jax.jit(lambda k: m.make_sampler(params)(b["lrms"], b["pan"], b["lms"], k, samples=3, steps=99))(jax.random.PRNGKey(2))
    fuse = jax.jit(lambda k: m.apply({"params": params}, b["lms"], b["pan"], k, method="fuse_key"))
    draws = [fuse(k) for k in jax.random.split(jax.random.PRNGKey(2), 3)]
    np.testing.assert_allclose(mean, np.mean(draws, axis=0), atol=1e-5)
    np.testing.assert_allclose(std, np.std(draws, axis=0), atol=1e-5)
    assert mean.shape == std.shape == (2, 16, 16, 4) and float(std.max()) > 0
    x = m.pretext_sample(params, b["lms"], b["pan"], jax.random.PRNGKey(0), which="ms2pan", steps=1)
    assert x.shape == (2, 16, 16, 1) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0


# ----------------------------------------------------------------------------- learning
@pytest.mark.usefixtures("data_dir")
def test_pretext_losses_fall_on_held_out_full_resolution_patches() -> None:
    """100 Adam steps of the pretext on full-resolution WV2 training patches (16 x 16 PAN px) lower
    both losses on patches of the held-out quarter (same keys before and after)."""
    from pansharp_jax.data import pipeline
    from pansharp_jax.data.io import load_scene

    scene = load_scene("fr/wv2_pnn.mat", sensor="WV2")
    train, held = pipeline.full_res_patch_sources(scene, patch=16, stride=96)
    cfg = _tiny(bands=8)
    m = cd.build_crossdiff(cfg)
    params = _fill(_shapes(cfg))
    hb = held.get_batch(np.arange(0, len(held), 3))  # 19 patches spread over the quarter
    keys = jax.random.split(jax.random.PRNGKey(11), 2)

    @jax.jit
    def held_loss(p):  # noqa: ANN001, ANN202
        ls = [m.apply({"params": p}, hb["lms"], hb["pan"], k, method="pretext_losses") for k in keys]
        return jnp.mean(jnp.stack([jnp.stack(x) for x in ls]), axis=0)

    tx = optax.adam(2e-3)

    @jax.jit
    def step(p, o, idx, k):  # noqa: ANN001, ANN202
        batch = {"lms": jnp.asarray(train.arrays["lms"])[idx], "pan": jnp.asarray(train.arrays["pan"])[idx]}
        g = jax.grad(lambda q: m.apply({"params": q}, batch, k, method="training_loss")[0])(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o

    before = np.asarray(held_loss(params))
    opt, rng = tx.init(params), np.random.default_rng(0)
    for i in range(100):
        params, opt = step(params, opt, rng.choice(len(train), 8, replace=False), jax.random.PRNGKey(100 + i))
    after = np.asarray(held_loss(params))
    assert np.all(after < 0.7 * before), (before, after)

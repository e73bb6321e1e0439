"""Classical methods tile by tile (pansharp_jax.classical.streaming): equal to the whole scene.

The reference is always the whole-scene ``METHODS[key]`` (toolbox-exact, float64): the tiled
product must match it on every pixel, the scene borders included (where the toolbox's
``interp23tap`` wraps around the scene). Scenes are chosen so that every window is smaller
than the scene along both axes (the tiling is really exercised).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import ndimage

from pansharp_jax import classical
from pansharp_jax.classical import streaming as st
from pansharp_jax.data.tiling import plan_tiles
from pansharp_jax.errors import InputError


def _scene(h: int, w: int, c: int, seed: int, ratio: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(lrms (h, w, C), pan (ratio h, ratio w, 1)) on [0, 1]: smooth correlated bands with
    band-dependent texture (well-separated principal components, well-posed regressions)."""
    rng = np.random.default_rng(seed)
    hh, ww = h * ratio, w * ratio
    y, x = np.mgrid[0:hh, 0:ww] / 37.0
    base = 0.3 + 0.1 * np.sin(1.3 * x + 0.4) * np.cos(0.9 * y) + 0.05 * np.sin(0.6 * x * y + 1.0)
    tex = ndimage.gaussian_filter(rng.normal(size=(hh, ww, c + 1)), sigma=(1.5, 1.5, 0)) * 0.3
    hr = base[..., None] * np.linspace(0.7, 1.3, c) + np.linspace(-0.05, 0.1, c)
    hr = hr + 0.04 * tex[..., :c] + 0.03 * tex[..., c:] * np.linspace(1.0, 2.0, c)
    pan = (hr.mean(-1) + 0.02 * tex[..., c])[..., None]
    lrms = ndimage.uniform_filter(hr, size=(ratio, ratio, 1))[ratio // 2 :: ratio, ratio // 2 :: ratio]
    return lrms, pan


def _whole(name: str, lrms: np.ndarray, pan: np.ndarray, sensor: str, ratio: int = 4) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(classical.METHODS[name](None, lrms, pan, sensor=sensor, ratio=ratio))


def _check_tiled(name: str, lrms: np.ndarray, pan: np.ndarray, sensor: str, tile: int, atol: float) -> None:
    m = st.streaming_method(name, sensor=sensor, ratio=4)
    plan = plan_tiles(pan.shape[0], pan.shape[1], tile=tile, margin=m.margin, align=4)
    assert plan.window_shape[0] < pan.shape[0] and plan.window_shape[1] < pan.shape[1], "windows as large as the scene"
    calls: list[tuple[int, int]] = []
    tiled = st.fuse_tiled(name, lrms, pan, sensor=sensor, ratio=4, tile=tile, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) == len(plan) * (m.passes + 1) and calls[-1][0] == calls[-1][1]
    whole = _whole(name, lrms, pan, sensor)
    assert tiled.shape == whole.shape
    err = np.abs(tiled - whole).max()
    assert err <= atol, f"{name}: max |tiled - whole| = {err:.3e}"


# ------------------------------------------------------------------ synthetic equality

# (PAN side = 4 x LR side) large enough that tile + 2 margin < scene side.
_SMALL = (50, 48)  # PAN 200 x 192: margins up to 64 with tile 48
_LARGE = (80, 80)  # PAN 320 x 320: BDSD's margin (128) with tile 56


@pytest.mark.parametrize("name", sorted(classical.METHODS))
def test_tiled_equals_whole_four_bands(name: str) -> None:
    size, tile = (_LARGE, 56) if name == "bdsd" else (_SMALL, 48)
    lrms, pan = _scene(*size, 4, seed=1)
    _check_tiled(name, lrms, pan, "QB", tile, atol=1e-9)


@pytest.mark.parametrize("name", ["bt_h", "mtf_glp_fs"])
def test_tiled_equals_whole_eight_bands(name: str) -> None:
    """8 bands: BT-H's haze is the band minimum; WV2 repeats MTF gains across bands."""
    lrms, pan = _scene(48, 48, 8, seed=2)
    _check_tiled(name, lrms, pan, "WV2", 48, atol=1e-9)


def test_every_method_has_a_streaming_form() -> None:
    assert set(st.STREAMING_METHODS) == set(classical.METHODS)
    for name in classical.METHODS:
        m = st.streaming_method(name, sensor="QB", ratio=4)
        assert m.margin % 4 == 0 and m.margin >= st.interp_reach(4)
        assert (m.passes == 0) == (name == "exp")


# ------------------------------------------------------------------ exact order statistics


def test_radix_selection_pins_exact_order_statistics() -> None:
    """The streamed radix selection returns exactly the k-th smallest value (np.sort),
    for values split over 'windows' with masks, negatives, zeros and ties included."""
    rng = np.random.default_rng(5)
    n, c = 3000, 3
    vals = rng.normal(0.2, 0.3, size=(n, c))
    vals[::7] = np.round(vals[::7], 2)  # ties
    vals[5, :] = 0.0
    vals[6, :] = -0.0
    vals[7, 0] = -1e-300
    valid = (rng.uniform(size=n) > 0.2).astype(np.float64)
    chunks = np.array_split(np.arange(n), 4)
    kept = vals[valid > 0]
    ranks = np.array([1, 17, kept.shape[0] // 2, kept.shape[0]], np.float64)
    prefix = np.zeros((len(ranks), c), np.uint64)
    rank = np.broadcast_to(ranks[:, None], (len(ranks), c)).copy()
    with jax.enable_x64(True):
        for k in range(4):
            hist = sum(
                np.asarray(st._radix_histogram(vals[i], valid[i], k, None if k == 0 else prefix, len(ranks))) for i in chunks
            )
            if k == 0:
                assert hist[0, 0].sum() == kept.shape[0]
            prefix, rank = st._radix_refine(hist, prefix, rank)
    got = st._key_to_float(prefix)
    want = np.sort(kept, axis=0)[ranks.astype(int) - 1]
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ nodata masking


def _framed(x: np.ndarray, b: int) -> np.ndarray:
    return np.pad(x, ((b, b), (b, b), (0, 0)))


@pytest.mark.parametrize("name", ["gs", "pca", "gsa", "bt_h"])
def test_masked_frame_is_left_out_of_statistics(name: str) -> None:
    """A zero (nodata) frame with mask 0 gives the statistics of the scene without it."""
    rng = np.random.default_rng(3)
    lms = rng.uniform(0.1, 0.6, (48, 40, 4)) + np.linspace(0, 0.2, 4)
    pan = lms.mean(-1, keepdims=True) + 0.05 * rng.normal(size=(48, 40, 1))
    lrms = lms[2::4, 2::4]
    b = 8
    args_in = (lms, pan, lrms, np.ones(lms.shape[:2]))
    args_fr = (_framed(lms, b), _framed(pan, b), _framed(lrms, b // 4), _framed(np.ones((*lms.shape[:2], 1)), b)[..., 0])
    m = st.streaming_method(name, sensor="QB", ratio=4)
    gather = jax.jit(m.gather, static_argnums=0)
    with jax.enable_x64(True):
        s_in = gather(0, *args_in, None)
        s_fr = gather(0, *args_fr, None)
    # Leaves of filtered quantities (the PAN low-passes of GSA and BT-H) change near the
    # frame: compare the pointwise ones.
    if name == "gsa":
        assert float(s_fr["low"]["n"]) == lrms.shape[0] * lrms.shape[1]
        s_in, s_fr = s_in["full"], s_fr["full"]
    if name == "bt_h":  # histogram counts: only the valid pixels (the frame's zeros would rank first)
        assert float(np.asarray(s_fr["hist"])[0, 0].sum()) == lms.shape[0] * lms.shape[1]
        s_in, s_fr = (s_in["hist"], s_in["ms"]), (s_fr["hist"], s_fr["ms"])
    for a, bb in zip(jax.tree.leaves(s_in), jax.tree.leaves(s_fr), strict=True):
        np.testing.assert_allclose(np.asarray(bb), np.asarray(a), rtol=1e-12, atol=1e-12)
    if name in ("gs", "pca"):
        f_in, f_fr = m.finish(0, s_in, None), m.finish(0, s_fr, None)
        for key in f_in:
            np.testing.assert_allclose(f_fr[key], f_in[key], rtol=1e-10, atol=1e-13, err_msg=key)


# ------------------------------------------------------------------ contract and errors


def test_position_is_required_where_the_low_pass_wraps() -> None:
    lrms, pan = _scene(8, 8, 4, seed=0)
    m = st.streaming_method("mtf_glp", sensor="QB", ratio=4)
    assert m.needs_position and not st.streaming_method("gsa", sensor="QB", ratio=4).needs_position
    lms = np.zeros((32, 32, 4))
    with jax.enable_x64(True), pytest.raises(InputError, match="origin"):
        m.gather(0, lms, pan, lrms, np.ones((32, 32)), None)
    with pytest.raises(InputError, match="no streaming form"):
        st.streaming_method("nope", sensor="QB", ratio=4)
    with pytest.raises(InputError, match="pass 1"):
        st.streaming_method("gsa", sensor="QB", ratio=4).finish(1, {}, None)
    with pytest.raises(InputError, match="valid pixels"):  # everything masked out (nodata)
        st.streaming_method("gs", sensor="QB", ratio=4).finish(0, {"n": 0.0, "s": np.zeros(5), "g": np.zeros((5, 5))}, None)
    with pytest.raises(InputError, match="tile"):
        st.fuse_tiled("gsa", lrms, pan, sensor="QB", ratio=4, tile=0)
    with pytest.raises(InputError, match="band"):
        st.fuse_tiled("gsa", lrms, pan, sensor="WV2", ratio=4, tile=16)


def test_window_lms_wraps_like_the_whole_scene() -> None:
    """The halo-extended upsampling equals the whole-scene one on a border window, where
    the plain upsampling of the window differs (interp23tap's circular boundary)."""
    lrms, _ = _scene(24, 20, 3, seed=4)
    up = jax.jit(classical.upsample_ms, static_argnums=1)
    with jax.enable_x64(True):
        whole = np.asarray(up(lrms, 4))
        window = (0, 48, 32, 80)  # top border, inner columns
        rows, cols = st.extended_lr_index(window, (96, 80), 4)
        got = np.asarray(jax.jit(st.window_lms, static_argnums=1)(lrms[np.ix_(rows, cols)], 4))
        plain = np.asarray(up(lrms[0:12, 8:20], 4))
    ref = whole[0:48, 32:80]
    reach = st.interp_reach(4) + 4  # context needed from the window's inner edges (bottom, left)
    core = (slice(0, 48 - reach), slice(reach, 48))  # touches the scene's top and right borders
    np.testing.assert_allclose(got[core], ref[core], rtol=0, atol=1e-14)
    assert np.abs(plain[core] - ref[core]).max() > 1e-3


# ------------------------------------------------------------------ real scene


@pytest.fixture(scope="module")
def wv2(data_dir):  # noqa: ANN001, ANN201
    from pansharp_jax.data.io import load_scene

    return load_scene(data_dir / "fr" / "wv2_pnn.mat")


@pytest.mark.parametrize("name", ["gsa", "mtf_glp_fs", "pracs", "bdsd", "bt_h"])
def test_real_scene_tiled_equals_whole(wv2, name: str) -> None:  # noqa: ANN001
    lrms, pan = np.asarray(wv2.lrms, np.float64), np.asarray(wv2.pan, np.float64)
    assert pan.shape == (1280, 1280, 1) and lrms.shape[-1] == 8
    tiled = st.fuse_tiled(name, lrms, pan, sensor=wv2.sensor, ratio=wv2.ratio, tile=256)
    whole = _whole(name, lrms, pan, wv2.sensor, wv2.ratio)
    err = np.abs(tiled - whole).max()
    print(f"wv2_pnn {name}: max |tiled - whole| = {err:.3e}")
    assert err <= 1e-6

"""Tiled full-resolution indices equal the whole-scene ones (``metrics.full_tiled``)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax import classical, metrics
from pansharp_jax.data import wald
from pansharp_jax.data.io import load_scene
from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.errors import InputError
from pansharp_jax.metrics import full_tiled
from pansharp_jax.metrics.full_tiled import evaluate_full_tiled, tile_margins

TOL = 1e-9


def _scene(size: int, nbands: int, ratio: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random (fused, lrms, pan) triple on [0, 1]: fused correlated with both inputs."""
    rng = np.random.default_rng(seed)
    lrms = rng.random((size // ratio, size // ratio, nbands))
    pan = rng.random((size, size, 1))
    up = np.kron(lrms, np.ones((ratio, ratio, 1)))  # nearest upsampling, independent of the code
    fused = np.clip(0.6 * up + 0.3 * pan + 0.1 * rng.random(up.shape), 0.0, 1.0)
    return fused, lrms, pan


class _Reader:
    """Window reader over an array that records every request."""

    def __init__(self, a: np.ndarray) -> None:
        self.a, self.calls = a, []

    def __call__(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        self.calls.append((r0, r1, c0, c1))
        return self.a[r0:r1, c0:c1].copy()


def _tiled(fused, lrms, pan, *, sensor, tile, ratio=4, **kw):
    rf, rp = _Reader(fused), _Reader(pan)
    h, w = pan.shape[:2]
    out = evaluate_full_tiled(
        rf, rp, lrms, height=h, width=w, ratio=ratio, sensor=sensor, max_dn=2047.0, tile=tile, **kw
    )
    return out, rf, rp


def _assert_equal(got: dict, want: dict, tol: float = TOL) -> None:
    assert list(got) == list(want)
    for k in want:
        assert np.isfinite(want[k]), k
        assert abs(got[k] - want[k]) <= tol, f"{k}: tiled {got[k]!r} vs whole {want[k]!r}"


@pytest.fixture(scope="module")
def qb_scene():
    fused, lrms, pan = _scene(256, 4)
    whole = metrics.evaluate_full(fused, lrms, pan, sensor="QB", ratio=4, max_dn=2047.0)
    return fused, lrms, pan, whole


@pytest.mark.parametrize("tile", [64, 128, 96])  # 96 does not divide 256
def test_tiled_equals_whole_qb(qb_scene, tile):
    fused, lrms, pan, whole = qb_scene
    got, rf, rp = _tiled(fused, lrms, pan, sensor="QB", tile=tile)
    _assert_equal(got, whole)
    # reads stay inside the scene and never exceed tile + 2 * margin
    m = tile_margins(4, 256, 256)
    assert rf.calls == rp.calls
    for r0, r1, c0, c1 in rf.calls:
        assert 0 <= r0 < r1 <= 256 and 0 <= c0 < c1 <= 256
        assert r1 - r0 <= tile + 2 * m.pan and c1 - c0 <= tile + 2 * m.pan


def test_tiled_equals_whole_wv2_eight_bands():
    fused, lrms, pan = _scene(256, 8, seed=1)
    whole = metrics.evaluate_full(fused, lrms, pan, sensor="WV2", ratio=4, max_dn=2047.0, flag_qnr=True)
    got, _, _ = _tiled(fused, lrms, pan, sensor="WV2", tile=96, flag_qnr=True)  # 96 does not divide 256
    _assert_equal(got, whole)


def test_tiled_equals_whole_non_square_ratio_two():
    fused, lrms, pan = _scene(128, 4, ratio=2, seed=2)
    fused, lrms, pan = fused[:, :96], lrms[:, :48], pan[:, :96]
    whole = metrics.evaluate_full(fused, lrms, pan, sensor="QB", ratio=2, max_dn=2047.0)
    got, _, _ = _tiled(fused, lrms, pan, sensor="QB", tile=64, ratio=2)
    _assert_equal(got, whole)


def test_too_small_margins_break_equality(qb_scene, monkeypatch):
    """The margins matter: without them the equality tests would fail (so they can fail)."""
    fused, lrms, pan, whole = qb_scene
    real = full_tiled.tile_margins
    monkeypatch.setattr(full_tiled, "tile_margins", lambda *a, **k: dataclasses.replace(real(*a, **k), lr=1))
    got, _, _ = _tiled(fused, lrms, pan, sensor="QB", tile=64)
    for k in ("D_lambda", "D_lambda_K", "D_S"):
        assert abs(got[k] - whole[k]) > 1e3 * TOL, k
    monkeypatch.setattr(full_tiled, "tile_margins", lambda *a, **k: dataclasses.replace(real(*a, **k), pan=0))
    with pytest.raises(RuntimeError, match="bicubic taps outside the window"):
        _tiled(fused, lrms, pan, sensor="QB", tile=64)


def _support(response: np.ndarray, centre: float) -> float:
    nz = np.nonzero(np.abs(response) > 0.0)[0]
    return float(max(centre - nz.min(), nz.max() - centre))


@pytest.mark.parametrize("ratio", [2, 4, 8])
def test_margins_cover_measured_supports(ratio):
    """Impulse responses of the real filters stay inside the margins."""
    m = tile_margins(ratio, 64 * ratio, 64 * ratio)
    n, j = 64, 32
    with jax.enable_x64(True):
        # upsampler: the PAN pixels an LR impulse at row j reaches, as LR rows
        x = np.zeros((n, n, 1))
        x[j, j] = 1.0
        up = np.asarray(metrics.full.upsample(jnp.asarray(x), ratio))[..., 0]
        rows = np.nonzero(np.any(up != 0.0, axis=1))[0]
        assert np.max(np.abs(rows // ratio - j)) < m.lr
        assert np.max(np.abs(rows - (j * ratio + ratio // 2))) <= m.upsample + ratio
        # bicubic shrink: the PAN rows LR row i sees (one impulse per channel)
        h, i = n * ratio, j
        eye = np.eye(h)[:, None, :]
        out = np.asarray(imresize_bicubic(jnp.asarray(eye), (1.0 / ratio, 1.0)))[i, 0]
        deps = np.nonzero(out != 0.0)[0]
        assert i * ratio - deps.min() <= m.resize and deps.max() - (i * ratio + ratio - 1) <= m.resize
        # MTF: the filtered impulse spreads over at most m.mtf pixels
        e = np.zeros((n, n, 1))
        e[j, j] = 1.0
        spread = np.asarray(wald.mtf_filter(jnp.asarray(e), [0.3], ratio))[..., 0]
        rows = np.nonzero(np.any(np.abs(spread) > 1e-12, axis=1))[0]
        assert np.max(np.abs(rows - j)) <= m.mtf
    assert m.pan >= max(m.mtf, m.resize) and m.pan % m.align == 0


def test_progress_and_errors(qb_scene):
    fused, lrms, pan, _ = qb_scene
    seen = []
    def progress(done: int, total: int) -> None:
        seen.append((done, total))

    _tiled(fused[:128, :128], lrms[:32, :32], pan[:128, :128], sensor="QB", tile=64, progress=progress)
    assert seen == [(k, 8) for k in range(1, 9)]
    kw = dict(height=128, width=128, ratio=4, sensor="QB", max_dn=2047.0, tile=64)
    good_f, good_p = _Reader(fused[:128, :128]), _Reader(pan[:128, :128])
    with pytest.raises(InputError, match="read_fused"):
        evaluate_full_tiled(lambda *w: np.zeros((3, 3, 4)), good_p, lrms[:32, :32], **kw)
    with pytest.raises(InputError, match="read_pan"):
        evaluate_full_tiled(good_f, lambda r0, r1, c0, c1: np.zeros((r1 - r0, c1 - c0, 2)), lrms[:32, :32], **kw)
    with pytest.raises(InputError, match="lrms"):
        evaluate_full_tiled(good_f, good_p, lrms[:16, :32], **kw)
    with pytest.raises(InputError, match="multiples of 32"):
        evaluate_full_tiled(good_f, good_p, lrms[:30, :32], **{**kw, "height": 120})
    with pytest.raises(InputError, match="two bands"):
        evaluate_full_tiled(good_f, good_p, lrms[:32, :32, :1], **kw)
    with pytest.raises(InputError, match="tile"):
        evaluate_full_tiled(good_f, good_p, lrms[:32, :32], **{**kw, "tile": 0})


def test_real_wv2_tiles_of_512(data_dir):
    scene = load_scene(data_dir / "fr" / "wv2_pnn.mat")
    with jax.enable_x64(True):
        fused = classical.mtf_glp(None, scene.lrms, scene.pan, sensor=scene.sensor.name, ratio=scene.ratio)
        fused = np.clip(np.asarray(fused, dtype=np.float64), 0.0, 1.0)
    max_dn = 2.0**scene.bits - 1.0
    whole = metrics.evaluate_full(fused, scene.lrms, scene.pan, sensor=scene.sensor, ratio=scene.ratio, max_dn=max_dn)
    h, w = scene.pan.shape[:2]
    got = evaluate_full_tiled(
        _Reader(fused), _Reader(np.asarray(scene.pan)), scene.lrms, height=h, width=w, ratio=scene.ratio,
        sensor=scene.sensor, max_dn=max_dn, tile=512,
    )
    _assert_equal(got, whole)

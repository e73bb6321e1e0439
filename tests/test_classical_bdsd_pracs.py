"""BDSD and PRACS: plain-NumPy re-implementations of the toolbox files, properties, real scenes.

There are no toolbox outputs for these two methods, so each is checked against a
float64 NumPy transcription of ``BDSD/BDSD.m`` / ``PRACS/PRACS.m`` written loop by loop
as MATLAB does it (column-major block pixels, normal equations, ``regress`` on
``[ones, X]``). The building blocks already checked against the toolbox elsewhere are
reused only as data: the MTF kernels (``wald.mtf_kernels``, test_wald) and the bicubic
resize weights (``resize.resize_weights``, test_resize); filtering and resizing are
applied here independently (``scipy.ndimage.correlate``, dense matrices).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io as sio
from scipy import ndimage

from pansharp_jax.classical.bdsd import bdsd, bdsd_blocks
from pansharp_jax.classical.exp import exp
from pansharp_jax.classical.pracs import pracs
from pansharp_jax.data import wald
from pansharp_jax.data.resize import resize_weights
from pansharp_jax.data.sensors import get_sensor
from pansharp_jax.errors import InputError
from pansharp_jax.metrics import evaluate_reduced

RATIO = 4


# --------------------------------------------------------------------------- NumPy toolbox


def _resize_matrix(n_in: int, scale: float) -> np.ndarray:
    weights, idx = resize_weights(n_in, scale)
    mat = np.zeros((weights.shape[0], n_in))
    for k in range(weights.shape[1]):
        np.add.at(mat, (np.arange(weights.shape[0]), idx[:, k]), weights[:, k])
    return mat


def imresize_np(x: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB imresize(x, scale), bicubic with antialiasing, band by band (2-D or 3-D x)."""
    if x.ndim == 3:
        return np.stack([imresize_np(x[..., k], scale) for k in range(x.shape[-1])], axis=-1)
    return _resize_matrix(x.shape[0], scale) @ x @ _resize_matrix(x.shape[1], scale).T


def mtf_np(ms: np.ndarray, gains, ratio: int) -> np.ndarray:
    """MTF.m: imfilter(band, h, 'replicate') per band."""
    kern = wald.mtf_kernels(gains, ratio)
    return np.stack([ndimage.correlate(ms[..., k], kern[..., k], mode="nearest") for k in range(ms.shape[-1])], -1)


def mtf_pan_np(pan: np.ndarray, gain: float, ratio: int) -> np.ndarray:
    """MTF_PAN.m on a 2-D PAN."""
    return ndimage.correlate(pan, wald.mtf_kernels([gain], ratio)[..., 0], mode="nearest")


def col(a: np.ndarray) -> np.ndarray:
    """MATLAB a(:)."""
    return a.ravel(order="F")


def mean2(a):
    return a.mean()


def std2(a):
    return a.std(ddof=1)


def corr2(a, b):
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())


def regress(y, x):
    return np.linalg.lstsq(x, y, rcond=None)[0]


def bdsd_reference(I_MS, I_PAN, ratio, S, sensor, phase=2):
    """BDSD.m transcribed. I_MS (N, M, Nb), I_PAN (N, M); phase 2 is MATLAB's 3:ratio:end."""
    sen = get_sensor(sensor)
    N, M, Nb = I_MS.shape
    pan_LP = mtf_pan_np(I_PAN, sen.pan_gnyq, ratio)
    pan_LP_d = pan_LP[phase::ratio, phase::ratio]  # 3:ratio:end
    ms_orig = imresize_np(I_MS, 1.0 / ratio)
    ms_LP_d = mtf_np(ms_orig, sen.gains(Nb), ratio)
    s = S // ratio
    out = np.zeros_like(I_MS)
    for bi in range(N // S):
        for bj in range(M // S):
            r = slice(bi * s, (bi + 1) * s)
            c = slice(bj * s, (bj + 1) * s)
            hs_LP_d, hs_orig, pld = ms_LP_d[r, c], ms_orig[r, c], pan_LP_d[r, c]
            Hd = np.zeros((s * s, Nb + 1))
            for k in range(Nb):
                Hd[:, k] = col(hs_LP_d[..., k])
            Hd[:, Nb] = col(pld)
            B = np.linalg.solve(Hd.T @ Hd, Hd.T)
            gamma = np.zeros((Nb + 1, Nb))
            for k in range(Nb):
                gamma[:, k] = B @ (col(hs_orig[..., k]) - col(hs_LP_d[..., k]))
            # compH_inject on the matching S x S block
            R = slice(bi * S, (bi + 1) * S)
            C = slice(bj * S, (bj + 1) * S)
            hs, pan = I_MS[R, C], I_PAN[R, C]
            H = np.zeros((S * S, Nb + 1))
            for k in range(Nb):
                H[:, k] = col(hs[..., k])
            H[:, Nb] = col(pan)
            for k in range(Nb):
                b_en = col(hs[..., k]) + H @ gamma[:, k]
                out[R, C, k] = b_en.reshape(S, S, order="F")
    return out


def pracs_reference(I_MS, I_PAN, ratio):
    """PRACS.m transcribed. I_MS (N, M, L), I_PAN (N, M)."""
    beta = 0.95
    N, M, L = I_MS.shape
    msexp_hm = np.zeros((N, M, L))
    for k in range(L):
        b = I_MS[..., k].copy()
        b = (b - mean2(b) + mean2(I_PAN) / std2(I_PAN) * std2(b)) * std2(I_PAN) / std2(b)
        b[b < 0] = 0
        msexp_hm[..., k] = b
    pan_l = imresize_np(imresize_np(I_PAN, 1.0 / ratio), ratio)
    bb = np.column_stack([np.ones(N * M)] + [col(msexp_hm[..., k]) for k in range(L)])
    alpha = regress(col(pan_l), bb)
    I_l = (bb @ alpha).reshape(N, M, order="F")
    I_h = np.zeros((N, M, L))
    for k in range(L):
        cc = corr2(col(I_l), col(msexp_hm[..., k]))
        I_h[..., k] = (cc * col(I_PAN) + (1 - cc) * col(msexp_hm[..., k])).reshape(N, M, order="F")
    I_h_low = np.zeros((N, M, L))
    for k in range(L):
        I_h_low[..., k] = imresize_np(imresize_np(I_h[..., k], 1.0 / ratio), ratio)
    I_l_prime = np.zeros((N, M, L))
    for k in range(L):
        a = regress(col(I_h_low[..., k]), bb)
        I_l_prime[..., k] = (bb @ a).reshape(N, M, order="F")
    delta = np.zeros((N, M, L))
    for k in range(L):
        delta[..., k] = I_h[..., k] - I_l_prime[..., k] - (mean2(I_h[..., k]) - mean2(I_l_prime[..., k]))
    aux3 = np.mean([std2(I_MS[..., k]) for k in range(L)])
    out = np.zeros((N, M, L))
    for k in range(L):
        b = I_MS[..., k]
        w = beta * corr2(col(I_l_prime[..., k]), col(b)) * np.std(col(b), ddof=1) / aux3
        L_I = 1 - np.abs(1 - corr2(col(I_l), col(b)) * b / I_l_prime[..., k])
        out[..., k] = b + w * L_I * delta[..., k]
    return out


# --------------------------------------------------------------------------- inputs


def scene(h: int, w: int, c: int, seed: int, ratio: int = RATIO) -> tuple[np.ndarray, np.ndarray]:
    """A small DN-like scene: correlated bands, PAN sharing their common structure."""
    rng = np.random.default_rng(seed)
    H, W = ratio * h, ratio * w
    common = ndimage.gaussian_filter(rng.standard_normal((H, W)), 1.5)
    common /= common.std()
    bands = []
    for k in range(c):
        own = ndimage.gaussian_filter(rng.standard_normal((H, W)), 2.0)
        bands.append(400 + 60 * k + 120 * (0.8 * common + 0.4 * own / own.std()))
    ms_hr = np.stack(bands, -1)
    pan = ms_hr.mean(-1) + 20 * rng.standard_normal((H, W))
    o = ratio // 2
    lrms = ms_hr[o::ratio, o::ratio] + 5 * rng.standard_normal((h, w, c))
    return lrms, pan[..., None]


def rel_err(a, b) -> float:
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


# Most tests share one configuration so that jit compiles each method once for it.
BASE = dict(h=16, w=16, c=4, seed=7)
SENSOR = "QB"

# --------------------------------------------------------------------------- reference checks


@pytest.mark.parametrize(
    "h,w,c,seed,block,sensor,ratio",
    [
        (16, 16, 4, 7, None, "QB", 4),  # BASE, global estimate
        (16, 24, 5, 3, 32, "generic", 4),  # 2 x 3 local blocks, non-square, 5 bands
        (8, 8, 3, 4, None, "generic", 2),  # ratio 2 (PAN phase 1, see bdsd's docstring)
    ],
)
def test_bdsd_matches_numpy_reference(h, w, c, seed, block, sensor, ratio):
    lrms, pan = scene(h, w, c, seed, ratio)
    with jax.enable_x64(True):
        fuse = bdsd if block is None else bdsd_blocks(block)
        ours = np.asarray(fuse(None, lrms, pan, sensor=sensor, ratio=ratio))
        lms = np.asarray(exp(None, lrms, pan, ratio=ratio))  # the toolbox's interp23tap
    # block None: the toolbox demo's S = size(I_MS, 1), one block on a square image
    ref = bdsd_reference(lms, pan[..., 0], ratio, block or ratio * h, sensor, phase=min(2, ratio - 1))
    err = rel_err(ours, ref)
    print(f"BDSD {h}x{w}x{c} ratio {ratio} block {block}: max rel diff vs NumPy reference {err:.2e}")
    assert ours.shape == ref.shape and ours.dtype == np.float64
    assert err < 1e-8
    # the fusion did something (detail injected), so the comparison is meaningful
    assert rel_err(lms, ref) > 1e-3


@pytest.mark.parametrize("h,w,c,seed,sensor", [(16, 16, 4, 7, "QB"), (16, 24, 5, 3, "generic")])
def test_pracs_matches_numpy_reference(h, w, c, seed, sensor):
    lrms, pan = scene(h, w, c, seed)
    with jax.enable_x64(True):
        ours = np.asarray(pracs(None, lrms, pan, sensor=sensor, ratio=RATIO))
        lms = np.asarray(exp(None, lrms, pan, ratio=RATIO))
    ref = pracs_reference(lms, pan[..., 0], RATIO)
    err = rel_err(ours, ref)
    print(f"PRACS {h}x{w}x{c}: max rel diff vs NumPy reference {err:.2e}")
    assert ours.shape == ref.shape and ours.dtype == np.float64
    assert err < 1e-8
    assert rel_err(lms, ref) > 1e-3


def test_bdsd_local_blocks_differ_from_global():
    """32 x 32 blocks (4 of them) estimate other weights than the whole image.

    (One block as large as the image is the global estimate: the first reference case.)
    """
    lrms, pan = scene(**BASE)
    with jax.enable_x64(True):
        glob = np.asarray(bdsd(None, lrms, pan, sensor=SENSOR, ratio=RATIO))
        local = np.asarray(bdsd_blocks(32)(None, lrms, pan, sensor=SENSOR, ratio=RATIO))
    assert rel_err(local, glob) > 1e-4


# --------------------------------------------------------------------------- properties

METHODS = [("bdsd", bdsd), ("bdsd_s32", bdsd_blocks(32)), ("pracs", pracs)]


@pytest.mark.parametrize("name,fuse", METHODS, ids=[m[0] for m in METHODS])
def test_scale_equivariant(name, fuse):
    lrms, pan = scene(**BASE)
    s = 2047.0
    with jax.enable_x64(True):
        dn = np.asarray(fuse(None, lrms, pan, sensor=SENSOR, ratio=RATIO))
        unit = np.asarray(fuse(None, lrms / s, pan / s, sensor=SENSOR, ratio=RATIO))
    assert rel_err(unit * s, dn) < 1e-10


@pytest.mark.parametrize("name,fuse", METHODS[::2], ids=[m[0] for m in METHODS[::2]])
def test_batch_float32_integer(name, fuse):
    """A batch of 2 in float32 ([0, 1] scale) and in integer DN: each image as fused alone in float64."""
    pairs = [scene(**BASE), scene(16, 16, 4, seed=8)]
    with jax.enable_x64(True):
        singles = np.stack([np.asarray(fuse(None, lr, p, sensor=SENSOR, ratio=RATIO)) for lr, p in pairs])
    assert rel_err(singles[0], singles[1]) > 1e-2  # the two images really differ
    lrms, pan = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    out32 = fuse(None, (lrms / 2047).astype(np.float32), (pan / 2047).astype(np.float32), sensor=SENSOR, ratio=RATIO)
    assert out32.dtype == jnp.float32 and out32.shape == (2, 64, 64, 4)
    out32 = np.asarray(out32, np.float64) * 2047
    assert np.isfinite(out32).all()
    for i in range(2):
        assert rel_err(out32[i], singles[i]) < 1e-4

    # integer DN input, PAN without its band axis: converted to float32
    lrms_i, pan_i = np.round(lrms).astype(np.uint16), np.round(pan[..., 0]).astype(np.uint16)
    out_i = fuse(None, lrms_i, pan_i, sensor=SENSOR, ratio=RATIO)
    assert out_i.dtype == jnp.float32 and out_i.shape == (2, 64, 64, 4)
    for i in range(2):
        assert rel_err(np.asarray(out_i[i], np.float64), singles[i]) < 1e-2


@pytest.mark.parametrize(
    "block,h,w,match",
    [
        (15, 16, 16, "even"),
        (6, 16, 16, "multiple of the ratio"),
        (48, 16, 16, "multiple of the block size"),
        (32, 16, 20, "multiple of the block size"),
        (8, 16, 16, "fewer than the 5 coefficients"),
    ],
)
def test_bdsd_bad_block_size_raises(block, h, w, match):
    lrms, pan = scene(h, w, 4, seed=1)
    with pytest.raises(InputError, match=match) as info:
        bdsd_blocks(block)(None, lrms.astype(np.float32), pan.astype(np.float32), sensor=SENSOR, ratio=RATIO)
    assert "\n" not in str(info.value)  # raised before tracing: one clean line


def test_bdsd_blocks_argument_checked_and_cached():
    for bad in (0, -4, 12.0, True):
        with pytest.raises(InputError):
            bdsd_blocks(bad)
    assert bdsd_blocks(128) is bdsd_blocks(128)
    assert bdsd_blocks(None) is bdsd
    assert bdsd.__name__ == "bdsd" and pracs.__name__ == "pracs"


def test_bdsd_wrong_band_count_for_sensor():
    lrms, pan = scene(16, 16, 5, seed=2)
    with pytest.raises(InputError, match="band count") as info:
        bdsd(None, lrms.astype(np.float32), pan.astype(np.float32), sensor="QB", ratio=RATIO)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- real scenes


@pytest.mark.parametrize("fname,max_dn,sensor", [("wv3_cdif.mat", 2047.0, "WV3"), ("pleiades_cdif.mat", 1023.0, "Pleiades")])
def test_real_scene_beats_exp(data_dir, fname, max_dn, sensor):
    mat = sio.loadmat(data_dir / "rr" / fname)
    lrms, pan, gt = mat["lrms"] * max_dn, mat["pan"][..., None] * max_dn, mat["gt"]
    scores = {}
    with jax.enable_x64(True):
        methods = [("EXP", exp), ("BDSD", bdsd), ("PRACS", pracs)]
        if sensor == "WV3":  # BDSD.m's "typical" 128 x 128 local blocks, on one scene only (time)
            methods.append(("BDSD-128", bdsd_blocks(128)))
        for name, fuse in methods:
            fused = np.asarray(fuse(None, lrms, pan, sensor=sensor, ratio=RATIO)) / max_dn
            scores[name] = evaluate_reduced(fused, gt, ratio=RATIO, max_dn=max_dn)
    for name, s in scores.items():
        print(f"{fname} {name:8s} " + " ".join(f"{k} {s[k]:.4f}" for k in ("Q2n", "Q_avg", "SAM", "ERGAS", "SCC")))
    for name in set(scores) - {"EXP"}:
        assert scores[name]["Q2n"] > scores["EXP"]["Q2n"] + 0.05, name
        assert scores[name]["ERGAS"] < 0.8 * scores["EXP"]["ERGAS"], name
        assert scores[name]["SCC"] > scores["EXP"]["SCC"], name
    if sensor == "WV3":
        # the literature puts BDSD and PRACS near GSA (Q2n 0.89, ERGAS 5.1) on this scene
        for name in ("BDSD", "PRACS"):
            assert scores[name]["Q2n"] > 0.85 and scores[name]["ERGAS"] < 6.5, name

"""Toolbox-exact metrics: golden toolbox values, plain NumPy re-implementations, properties."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io as sio

from pansharp_jax import metrics
from pansharp_jax.data import wald
from pansharp_jax.errors import InputError
from pansharp_jax.metrics import _quality, full, reduced

from toolbox_reference import FR_KEYS, FR_REFERENCE, RR_CUT_KEYS, RR_NOCUT_KEYS, RR_REFERENCE

# The reference values carry 12 significant digits.
REL_TOL = 1e-9


def _assert_close(got: dict, keys, want, label: str) -> None:
    worst = 0.0
    for key, ref in zip(keys, want):
        if ref == 0.0:
            assert abs(got[key]) <= 1e-12, f"{label} {key}: {got[key]!r} vs 0"
            continue
        rel = abs(got[key] / ref - 1.0)
        worst = max(worst, rel)
        assert rel <= REL_TOL, f"{label} {key}: {got[key]!r} vs {ref!r} (relative {rel:.2e})"
    print(f"{label}: worst relative difference {worst:.2e}")


def _interp23tap_dn(lrms_dn: np.ndarray) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(wald.interp23tap(jnp.asarray(lrms_dn, jnp.float64), 4))


# ------------------------------------------------------------------ golden: reduced


@pytest.mark.parametrize("method", ["EXP", "GSA", "BT_H", "MTF_GLP_HPM", "MTF_GLP_FS", "AWLP"])
def test_golden_reduced_wv3(data_dir, method):
    gt = sio.loadmat(data_dir / "rr" / "wv3_cdif.mat")["gt"].astype(np.float64)
    fused_dn = sio.loadmat(data_dir / "golden" / f"wv3_cdif_{method}.mat")["I_F"].astype(np.float64)
    ref = RR_REFERENCE[("wv3_cdif", method)]
    cut = metrics.evaluate_reduced(fused_dn / 2047.0, gt, ratio=4, max_dn=2047.0)
    nocut = metrics.evaluate_reduced(fused_dn / 2047.0, gt, ratio=4, max_dn=2047.0, cut=0)
    _assert_close(cut, RR_CUT_KEYS, ref[:5], f"wv3 {method} cut")
    _assert_close(nocut, RR_NOCUT_KEYS, ref[5:], f"wv3 {method} nocut")


@pytest.mark.parametrize("scene,sensor_dn", [("wv3_cdif", 2047.0), ("pleiades_cdif", 1023.0)])
def test_reduced_exp_from_our_interpolator(data_dir, scene, sensor_dn):
    mat = sio.loadmat(data_dir / "rr" / f"{scene}.mat")
    exp = _interp23tap_dn(mat["lrms"] * sensor_dn) / sensor_dn
    ref = RR_REFERENCE[(scene, "EXP")]
    cut = metrics.evaluate_reduced(exp, mat["gt"], ratio=4, max_dn=sensor_dn)
    nocut = metrics.evaluate_reduced(exp, mat["gt"], ratio=4, max_dn=sensor_dn, cut=0)
    _assert_close(cut, RR_CUT_KEYS, ref[:5], f"{scene} EXP cut")
    _assert_close(nocut, RR_NOCUT_KEYS, ref[5:], f"{scene} EXP nocut")


def test_golden_exp_equals_our_exp(data_dir):
    """Sanity link between the golden file and our interpolator (same DN)."""
    mat = sio.loadmat(data_dir / "rr" / "wv3_cdif.mat")
    golden = sio.loadmat(data_dir / "golden" / "wv3_cdif_EXP.mat")["I_F"]
    assert np.abs(_interp23tap_dn(mat["lrms"] * 2047.0) - golden).max() < 1e-9


# ------------------------------------------------------------------ golden: full


@pytest.mark.parametrize("scene", list(FR_REFERENCE))
def test_golden_full_exp(data_dir, scene):
    key, sensor, refs = FR_REFERENCE[scene]
    ref = refs["EXP"]
    mat = sio.loadmat(data_dir / "fr" / f"{scene}.mat")
    lrms = mat[key].astype(np.float64) / 2047.0
    pan = mat["I_PAN"].astype(np.float64)[..., None] / 2047.0
    exp = _interp23tap_dn(lrms * 2047.0) / 2047.0
    got = metrics.evaluate_full(exp, lrms, pan, sensor=sensor, ratio=4, max_dn=2047.0)
    assert set(got) == set(FR_KEYS)
    _assert_close(got, FR_KEYS, ref, f"{scene} EXP")


# ------------------------------------------------------ plain NumPy re-implementations


def _conj(v: np.ndarray) -> np.ndarray:
    out = -v.copy()
    out[..., 0] = v[..., 0]
    return out


def _omul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Toolbox onion product along the last axis: (a, b)(c, d) = (ac - d* b, a* d* + c b*)."""
    n = x.shape[-1]
    if n == 1:
        return x * y
    h = n // 2
    a, b, c, d = x[..., :h], x[..., h:], y[..., :h], y[..., h:]
    return np.concatenate([_omul(a, c) - _omul(_conj(d), b), _omul(_conj(a), _conj(d)) + _omul(c, _conj(b))], axis=-1)


def _uint16(x: np.ndarray) -> np.ndarray:
    r = np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5))
    return np.clip(np.nan_to_num(r), 0, 65535)


def _onions_block_ref(ref: np.ndarray, fus: np.ndarray) -> np.ndarray:
    """Literal block Q2n: normalise, conjugate, onion moments. ref, fus: (b, b, N)."""
    n = ref.shape[0] * ref.shape[1]
    nb = ref.shape[2]
    r = ref.astype(np.float64).copy()
    f = fus.astype(np.float64).copy()
    for i in range(nb):
        s = r[..., i].mean()
        t = r[..., i].std(ddof=1)
        if t == 0:
            t = np.finfo(float).eps
        r[..., i] = (r[..., i] - s) / t + 1
        f[..., i] = f[..., i] - s + 1 if s == 0 else (f[..., i] - s) / t + 1
    f = _conj(f)
    m1, m2 = r.reshape(-1, nb).mean(0), f.reshape(-1, nb).mean(0)
    k = n / (n - 1)
    var = k * (np.sum(r**2, -1).mean() + np.sum(f**2, -1).mean()) - k * (np.sum(m1**2) + np.sum(m2**2))
    bias = 2 * np.linalg.norm(m1) * np.linalg.norm(m2) / (np.sum(m1**2) + np.sum(m2**2))
    if var == 0:
        q = np.zeros(nb)
        q[-1] = bias
        return q
    cov = k * _omul(r, f).reshape(-1, nb).mean(0) - k * _omul(m1, m2)
    return cov * bias * 2 / var


def _q2n_ref(gt: np.ndarray, fused: np.ndarray, block: int) -> float:
    h, w, c = gt.shape
    ph, pw = math.ceil(h / block) * block - h, math.ceil(w / block) * block - w
    pads = []
    for img in (gt, fused):
        img = np.concatenate([img, img[:, ::-1][:, :pw]], axis=1) if pw else img
        img = np.concatenate([img, img[::-1][:ph]], axis=0) if ph else img
        pads.append(_uint16(img))
    g, f = pads
    nb = 1 << (c - 1).bit_length()
    g = np.concatenate([g, np.zeros(g.shape[:2] + (nb - c,))], -1)
    f = np.concatenate([f, np.zeros(f.shape[:2] + (nb - c,))], -1)
    vals = []
    for y in range(0, g.shape[0], block):
        for x in range(0, g.shape[1], block):
            q = _onions_block_ref(g[y : y + block, x : x + block], f[y : y + block, x : x + block])
            vals.append(np.sqrt(np.sum(q**2)))
    return float(np.mean(vals))


def _img_qi_ref(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Wang's img_qi, literally, with its guards (one band)."""
    n = k * k
    h, w = a.shape
    out = np.empty((h - k + 1, w - k + 1))
    for i in range(h - k + 1):
        for j in range(w - k + 1):
            x, y = a[i : i + k, j : j + k], b[i : i + k, j : j + k]
            s1, s2 = x.sum(), y.sum()
            s11, s22, s12 = (x * x).sum(), (y * y).sum(), (x * y).sum()
            num = 4 * (n * s12 - s1 * s2) * s1 * s2
            d1 = n * (s11 + s22) - s1 * s1 - s2 * s2
            d2 = s1 * s1 + s2 * s2
            if d1 * d2 != 0:
                out[i, j] = num / (d1 * d2)
            elif d1 == 0 and d2 != 0:
                out[i, j] = 2 * s1 * s2 / d2
            else:
                out[i, j] = 1.0
    return float(out.mean())


def _uqi_ref(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.ravel(), y.ravel()
    c = np.cov(x, y)
    return 4 * c[0, 1] * x.mean() * y.mean() / (c[0, 0] + c[1, 1]) / (x.mean() ** 2 + y.mean() ** 2)


def _block_q_ref(a: np.ndarray, b: np.ndarray, s: int) -> float:
    return float(np.mean([_uqi_ref(a[i : i + s, j : j + s], b[i : i + s, j : j + s]) for i in range(0, a.shape[0], s) for j in range(0, a.shape[1], s)]))


def _scene(shape, seed, flat=False):
    rng = np.random.default_rng(seed)
    gt = rng.random(shape) * 1500 + 100
    fused = gt + rng.normal(0, 60, shape)
    if flat:  # flat and zero areas exercise the toolbox's guards
        gt[:40, :40] = 0.0
        fused[:40, :40] = 0.0
        gt[-36:, -36:, 0] = 700.0
        fused[-36:, :36] = 300.0
    return gt, fused


@pytest.mark.parametrize("shape,flat", [((70, 75, 4), False), ((64, 64, 8), True), ((50, 40, 3), False), ((40, 70, 5), True)])
def test_q2n_matches_numpy_loop(shape, flat):
    gt, fused = _scene(shape, 3, flat)
    with jax.enable_x64(True):
        got = float(reduced.q2n_index(jnp.asarray(gt), jnp.asarray(fused), 32, 32))
    assert got == pytest.approx(_q2n_ref(gt, fused, 32), rel=1e-12, abs=1e-13)


@pytest.mark.parametrize("block,flat", [(32, False), (32, True), (24, True)])
def test_q_avg_matches_numpy_loop(block, flat):
    gt, fused = _scene((60, 58, 2), 4, flat)
    want = np.mean([_img_qi_ref(gt[..., c], fused[..., c], block) for c in range(2)])
    with jax.enable_x64(True):
        got = float(reduced.q_avg(jnp.asarray(gt), jnp.asarray(fused), block))
    assert got == pytest.approx(want, rel=1e-11, abs=1e-12)


def test_sam_ergas_scc_match_numpy():
    gt, fused = _scene((30, 31, 4), 5)
    gt[3, 4] = 0.0  # a zero pixel is left out of SAM
    fused[3, 4] = 0.0
    norms = np.sqrt((gt**2).sum(-1) * (fused**2).sum(-1))
    ok = norms != 0
    ang = np.degrees(np.arccos(np.clip((gt * fused).sum(-1)[ok] / norms[ok], -1, 1))).mean()
    ergas = 25 * np.sqrt(np.mean(((gt - fused) ** 2).mean((0, 1)) / gt.mean((0, 1)) ** 2))
    from scipy import ndimage

    def sobel_mag(img):
        inner = img[1:-1, 1:-1]
        k = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float)
        gy = np.stack([ndimage.correlate(inner[..., c], k, mode="constant") for c in range(img.shape[2])], -1)
        gx = np.stack([ndimage.correlate(inner[..., c], k.T, mode="constant") for c in range(img.shape[2])], -1)
        return np.hypot(gx, gy)

    a, b = sobel_mag(fused), sobel_mag(gt)
    scc = (a * b).sum() / np.sqrt((a * a).sum()) / np.sqrt((b * b).sum())
    with jax.enable_x64(True):
        g, f = jnp.asarray(gt), jnp.asarray(fused)
        assert float(reduced.sam(g, f)) == pytest.approx(ang, rel=1e-12)
        assert float(reduced.ergas(g, f, 4)) == pytest.approx(ergas, rel=1e-12)
        assert float(reduced.scc(g, f)) == pytest.approx(scc, rel=1e-12)


def test_sam_two_by_two_by_hand():
    gt = np.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [3.0, 4.0]]])
    fused = np.array([[[0.0, 1.0], [1.0, 0.0]], [[5.0, 5.0], [4.0, 3.0]]])
    # angles: 90 deg, 45 deg, (pixel with a zero vector skipped), acos(24/25)
    want = (90.0 + 45.0 + math.degrees(math.acos(24 / 25))) / 3
    with jax.enable_x64(True):
        assert float(reduced.sam(jnp.asarray(gt), jnp.asarray(fused))) == pytest.approx(want, rel=1e-13)


def test_d_s_and_d_lambda_match_numpy_loop():
    rng = np.random.default_rng(6)
    ms_up = rng.random((64, 96, 3)) * 1000 + 50
    fused = ms_up + rng.normal(0, 30, ms_up.shape)
    pan = ms_up.mean(-1, keepdims=True) + rng.normal(0, 10, (64, 96, 1))
    with jax.enable_x64(True):
        pan_low = np.asarray(full.pan_low(jnp.asarray(pan), 4))[..., 0]
        ds = float(full.d_s(jnp.asarray(fused), jnp.asarray(ms_up), jnp.asarray(pan), 4, 32))
        dl = float(full.d_lambda(jnp.asarray(fused), jnp.asarray(ms_up), 32))
    want_ds = np.mean([abs(_block_q_ref(fused[..., b], pan[..., 0], 32) - _block_q_ref(ms_up[..., b], pan_low, 32)) for b in range(3)])
    want_dl = np.mean(
        [abs(_block_q_ref(fused[..., i], fused[..., j], 32) - _block_q_ref(ms_up[..., i], ms_up[..., j], 32)) for i, j in itertools.combinations(range(3), 2)]
    )
    assert ds == pytest.approx(want_ds, rel=1e-11)
    assert dl == pytest.approx(want_dl, rel=1e-11)


def test_onion_table_matches_recursive_product():
    rng = np.random.default_rng(7)
    for n in (1, 2, 4, 8):
        a, b = rng.normal(size=n), rng.normal(size=n)
        via_table = np.einsum("i,j,ijk->k", a, b, _quality.onion_table(n))
        np.testing.assert_allclose(via_table, _omul(a, b), atol=1e-14)


def test_matlab_uint16_cast():
    x = jnp.asarray([-3.0, -0.5, 0.49, 0.5, 1.5, 2.5, 65535.4, 70000.0, np.nan])
    with jax.enable_x64(True):
        got = np.asarray(_quality.matlab_uint16(jnp.asarray(x, jnp.float64)))
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 2, 3, 65535, 65535, 0])


# ------------------------------------------------------------------ properties, API


def test_identical_images_are_perfect():
    rng = np.random.default_rng(8)
    img = rng.random((96, 96, 4)) * 0.8 + 0.1
    out = metrics.evaluate_reduced(img, img, cut=0)
    assert out["Q2n"] == pytest.approx(1.0, abs=1e-12)
    assert out["Q_avg"] == pytest.approx(1.0, abs=1e-12)
    assert out["SCC"] == pytest.approx(1.0, abs=1e-12)
    assert out["SSIM"] == pytest.approx(1.0, abs=1e-12)
    assert out["SAM"] == pytest.approx(0.0, abs=1e-5)  # acos near 1 amplifies rounding
    assert out["ERGAS"] == 0.0
    assert out["PSNR"] == math.inf


def test_psnr_and_ssim_known_values():
    gt = np.full((40, 40, 2), 0.5)
    fused = gt + 0.1  # MSE 0.01 -> 20 dB; SSIM of a constant shift: luminance term only
    out = metrics.evaluate_reduced(fused, gt, cut=0, block=8)
    assert out["PSNR"] == pytest.approx(20.0, rel=1e-12)
    c1 = 0.01**2
    assert out["SSIM"] == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1), rel=1e-12)


def test_full_resolution_exp_has_no_spectral_distortion():
    rng = np.random.default_rng(9)
    lrms = rng.random((16, 16, 4)) * 0.5 + 0.2
    pan = rng.random((64, 64, 1)) * 0.5 + 0.2
    with jax.enable_x64(True):
        exp = np.asarray(wald.interp23tap(jnp.asarray(lrms), 4))
    out = metrics.evaluate_full(exp, lrms, pan, sensor="QB")
    assert abs(out["D_lambda"]) < 1e-12
    assert out["QNR"] == pytest.approx(1.0 - out["D_S"], rel=1e-12)
    assert out["HQNR"] == pytest.approx((1.0 - out["D_lambda_K"]) * (1.0 - out["D_S"]), rel=1e-12)


def test_batch_matches_single_images():
    rng = np.random.default_rng(10)
    gt = rng.random((2, 64, 64, 4))
    fused = gt + rng.normal(0, 0.02, gt.shape)
    batch = metrics.evaluate_reduced(fused, gt, cut=5)
    for i in range(2):
        single = metrics.evaluate_reduced(fused[i], gt[i], cut=5)
        for k in metrics.REDUCED_KEYS:
            assert isinstance(single[k], float)
            assert batch[k].shape == (2,)
            assert batch[k][i] == pytest.approx(single[k], rel=1e-12)
    lrms = rng.random((2, 8, 8, 4))
    pan = rng.random((2, 32, 32, 1))
    fr_batch = metrics.evaluate_full(fused[:, :32, :32], lrms, pan, sensor=None)
    fr_single = metrics.evaluate_full(fused[1, :32, :32], lrms[1], pan[1], sensor=None)
    for k in metrics.FULL_KEYS:
        assert fr_batch[k][1] == pytest.approx(fr_single[k], rel=1e-12)


def test_array_functions_jit_in_float32_and_float64():
    rng = np.random.default_rng(11)
    gt = jnp.asarray(rng.random((64, 64, 4)) * 1000)
    fused = gt + 5.0
    for fn in (reduced.q2n_index, reduced.q_avg, reduced.sam, reduced.scc, reduced.ergas):
        v32 = float(jax.jit(fn)(gt.astype(jnp.float32), fused.astype(jnp.float32)))
        with jax.enable_x64(True):
            v64 = float(jax.jit(fn)(jnp.asarray(gt, jnp.float64), jnp.asarray(fused, jnp.float64)))
        assert v32 == pytest.approx(v64, rel=1e-3)


def test_cut_border_is_matlab_slice():
    x = jnp.arange(256.0)[None, :, None] * jnp.ones((256, 1, 1))
    out = reduced.cut_border(x, 21)
    assert out.shape == (215, 215, 1)
    assert float(out[0, 0, 0]) == 20.0 and float(out[0, -1, 0]) == 234.0


def test_bad_inputs():
    a = np.zeros((64, 64, 4))
    with pytest.raises(InputError):
        metrics.evaluate_reduced(a, np.zeros((64, 64, 3)))
    with pytest.raises(InputError):
        metrics.evaluate_reduced(np.zeros((64, 64)), np.zeros((64, 64)))
    with pytest.raises(InputError):
        metrics.evaluate_reduced(a, a, cut=21)  # 64 - 2 * 21 + 1 < 32
    with pytest.raises(InputError):
        metrics.evaluate_full(np.zeros((48, 48, 4)), np.zeros((12, 12, 4)), np.zeros((48, 48, 1)), sensor="QB")
    with pytest.raises(InputError):
        metrics.evaluate_full(a, np.zeros((16, 16, 4)), np.zeros((64, 64, 2)), sensor="QB")
    with pytest.raises(InputError):
        metrics.evaluate_full(a, np.zeros((32, 32, 4)), np.zeros((64, 64, 1)), sensor="QB")

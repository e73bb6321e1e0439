"""Wald protocol: golden re-derivation of the rr/ files, and filter properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io as sio
from scipy import ndimage

from pansharp_jax.data import wald
from pansharp_jax.errors import InputError

RR_SCENES = [
    ("wv3_cdif.mat", "gt", "lrms", 2047.0, "WV3"),
    ("gf2_guangzhou.mat", "Ref_I_gt", "I_lrms", 1023.0, "GF2"),
    ("pleiades_cdif.mat", "gt", "lrms", 1023.0, "Pleiades"),
]


@pytest.mark.parametrize("fname,gt_key,lr_key,scale,sensor", RR_SCENES)
def test_golden_lrms_rederived_from_gt(data_dir, fname, gt_key, lr_key, scale, sensor):
    mat = sio.loadmat(data_dir / "rr" / fname)
    gt_dn = mat[gt_key].astype(np.float64) * scale
    lrms_dn = mat[lr_key].astype(np.float64) * scale
    with jax.enable_x64(True):
        rederived = np.asarray(wald.decimate(wald.mtf_filter(jnp.asarray(gt_dn), sensor, 4), 4))
    err = np.abs(rederived - lrms_dn).max()
    print(f"{fname}: max |LRMS_rederived - LRMS_file| = {err:.3e} DN")
    assert err <= 1e-9


def test_other_decimation_phase_misses(data_dir):
    """The phase matters: the toolbox's x[2::4, 2::4] and no other reproduces the file."""
    mat = sio.loadmat(data_dir / "rr" / "wv3_cdif.mat")
    gt_dn, lrms_dn = mat["gt"] * 2047.0, mat["lrms"] * 2047.0
    with jax.enable_x64(True):
        filtered = np.asarray(wald.mtf_filter(jnp.asarray(gt_dn), "WV3", 4))
    assert np.abs(filtered[1::4, 1::4] - lrms_dn).max() > 1.0


def test_interp23tap_equals_toolbox_exp(data_dir):
    mat = sio.loadmat(data_dir / "rr" / "wv3_cdif.mat")
    golden = sio.loadmat(data_dir / "golden" / "wv3_cdif_EXP.mat")["I_F"]
    with jax.enable_x64(True):
        ours = np.asarray(wald.interp23tap(jnp.asarray(mat["lrms"] * 2047.0), 4))
    assert np.abs(ours - golden).max() <= 1e-9


def test_mtf_filter_equals_direct_correlation():
    """FFT path vs scipy's direct correlation with replicate ('nearest') boundary."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(50, 37, 3))
    gains = (0.3, 0.25, 0.35)
    with jax.enable_x64(True):
        ours = np.asarray(wald.mtf_filter(jnp.asarray(x), gains, 4))
    kernels = wald.mtf_kernels(gains, 4)
    for b in range(3):
        ref = ndimage.correlate(x[..., b], kernels[..., b], mode="nearest")
        np.testing.assert_allclose(ours[..., b], ref, atol=1e-12)


@pytest.mark.parametrize("gain", [0.15, 0.3, 0.365])
def test_mtf_kernel_response_at_nyquist(gain):
    """The kernel's frequency response at the MS Nyquist frequency is the sensor gain."""
    ratio = 4
    k = wald.mtf_kernels([gain], ratio)[..., 0]
    n = np.arange(k.shape[0]) - k.shape[0] // 2
    f = 1.0 / (2 * ratio)  # cycles per PAN sample
    response = np.sum(k * np.cos(2 * np.pi * f * n)[None, :])
    dc = k.sum()
    assert abs(dc - 1.0) < 0.01
    # Windowing and truncation to 41 taps lower the response a little (~9% at 0.15).
    assert abs(response - gain) < 0.1 * gain


def test_interp23tap_keeps_samples_and_constants():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(2, 8, 6, 3))
    with jax.enable_x64(True):
        up2 = np.asarray(wald.interp23tap(jnp.asarray(x), 2))
        up4 = np.asarray(wald.interp23tap(jnp.asarray(x), 4))
        const = np.asarray(wald.interp23tap(jnp.full((4, 4, 1), 7.0), 4))
    assert up4.shape == (2, 32, 24, 3)
    np.testing.assert_allclose(up2[:, 1::2, 1::2], x, atol=1e-12)  # interpolating filter
    np.testing.assert_allclose(up4[:, 2::4, 2::4], x, atol=1e-12)  # aligned with decimate
    np.testing.assert_allclose(const, 7.0, atol=1e-12)


@pytest.mark.parametrize("ratio", [3, 5])
def test_interp_general_keeps_samples_for_any_ratio(ratio):
    rng = np.random.default_rng(ratio)
    x = rng.uniform(size=(7, 9, 2))
    with jax.enable_x64(True):
        up = np.asarray(wald.interp_general(jnp.asarray(x), ratio))
    assert up.shape == (7 * ratio, 9 * ratio, 2)
    np.testing.assert_allclose(wald.decimate(up, ratio), x, atol=1e-9)


def test_jit_and_batch_consistency():
    rng = np.random.default_rng(2)
    batch = rng.uniform(size=(2, 32, 32, 4)).astype(np.float32)
    pan = rng.uniform(size=(2, 32, 32, 1)).astype(np.float32)
    degrade = jax.jit(lambda m, p: wald.wald_degrade(m, p, "QB", 4))
    lr, pan_lr = degrade(batch, pan)
    assert lr.shape == (2, 8, 8, 4) and pan_lr.shape == (2, 8, 8, 1) and lr.dtype == jnp.float32
    single, _ = wald.wald_degrade(batch[1], pan[1], "QB", 4)
    np.testing.assert_allclose(np.asarray(lr[1]), np.asarray(single), atol=1e-5)


def test_bad_input_errors():
    with pytest.raises(InputError, match="power-of-two"):
        wald.interp23tap(jnp.zeros((4, 4, 1)), 3)
    with pytest.raises(InputError, match="wrong band count"):
        wald.mtf_filter(jnp.zeros((8, 8, 3)), "WV3", 4)
    with pytest.raises(InputError, match="not a multiple of the ratio"):
        wald.wald_degrade(jnp.zeros((10, 10, 4)), jnp.zeros((10, 10, 1)), "QB", 4)

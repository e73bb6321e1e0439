"""HyRA: exact decompositions of linear methods, analytic frequency responses, the SR net.

References are written here from formulas: Keys' cubic kernel (a = -0.5, MATLAB's
``imresize``) and its DTFT, the composite kernel of a flax convolution stack taken
from its parameters, and the derivative of a quadratic PAN injection.
"""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import convolve2d

from pansharp_jax.analysis import hyra, impulse_responses, sr_impulse_response
from pansharp_jax.analysis.hyra import hf_energy, radial_profile
from pansharp_jax.analysis.sr import SRNet, depth_to_space, train_sr
from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.data.scene import Scene
from pansharp_jax.data.wald import interp23tap
from pansharp_jax.errors import InputError
from pansharp_jax.methods import Method

R = 4


def keys(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel, a = -0.5."""
    ax = np.abs(x)
    return np.where(ax <= 1, 1.5 * ax**3 - 2.5 * ax**2 + 1, np.where(ax < 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0))


def dtft_2d(kernel: np.ndarray, n: int) -> np.ndarray:
    """sum_d h[d] exp(-2 pi i f.d) on f = k/n, d measured from the kernel's centre (direct sum)."""
    rad = kernel.shape[0] // 2
    d = np.arange(-rad, rad + 1)
    e = np.exp(-2j * np.pi * np.outer(np.fft.fftfreq(n), d))  # (n, K)
    return e @ kernel @ e.T


def _scene(c: int = 2, h: int = 24, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    return Scene(rng.random((h, h, c)), rng.random((R * h, R * h, 1)), ratio=R, bits=11, name="random")


def _bicubic_method(with_jax: bool) -> Method:
    def fuse_batch(lrms, pan, sensor, ratio, lms=None):
        with jax.enable_x64(True):
            return np.asarray(imresize_bicubic(jnp.asarray(lrms), ratio))

    jax_fn = (lambda sensor, ratio: (lambda lrms, pan: imresize_bicubic(lrms, ratio))) if with_jax else None
    return Method("bicubic", "Bicubic", fuse_batch, "test", jax_fn=jax_fn, dtype="float64")


@pytest.mark.parametrize("with_jax", [False, True], ids=["difference", "derivative"])
def test_bicubic_is_linear_with_the_keys_transfer_function(with_jax):
    scene = _scene()
    res = hyra(_bicubic_method(with_jax), scene, size=33, nfft=64)
    assert res.responses.linearization == ("derivative" if with_jax else "difference")
    dec = res.decomposition
    assert np.abs(dec.interior(dec.nonlinear)).max() < 1e-5
    assert res.summary["hf_share_nonlinear"] < 1e-8
    # LR sample j of MATLAB's x4 bicubic sits at HR 4j + 1.5; our impulse origin is 4j + 2,
    # so the kernel at offset d is keys((d + 0.5) / 4) on each axis.
    d = np.arange(-16, 17)
    h1 = keys((d + 0.5) / R)
    expected = dtft_2d(np.outer(h1, h1), 64)
    for band in range(2):
        np.testing.assert_allclose(res.transfer.ms[band, band], expected, atol=1e-4)
        np.testing.assert_allclose(res.transfer.ms[band, 1 - band], 0.0, atol=1e-6)
    np.testing.assert_allclose(res.transfer.pan, 0.0, atol=1e-6)
    assert res.summary["ms_dc_gain"] == pytest.approx(1.0, abs=1e-6)  # |H(0)| / ratio^2


class LinearConvNet(nn.Module):
    """A pan-sharpening conv stack without activations: [LMS, PAN] -> 5x5 -> 3x3 -> bands."""

    bands: int

    @nn.compact
    def __call__(self, lms: jax.Array, pan: jax.Array) -> jax.Array:
        x = jnp.concatenate([lms, pan], axis=-1)
        x = nn.Conv(3, (5, 5), padding="SAME", name="c1")(x)
        return nn.Conv(self.bands, (3, 3), padding="SAME", name="c2")(x)


def _conv_method(bands: int) -> tuple[Method, dict]:
    net = LinearConvNet(bands)
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((1, 8, 8, bands)), jnp.zeros((1, 8, 8, 1)))["params"]
    params = jax.tree_util.tree_map(lambda p: p + 0.05, params)  # non-zero biases too

    def f(lrms, pan):  # bicubic LMS: responses within the 33-pixel window
        return net.apply({"params": params}, imresize_bicubic(lrms, R), pan)

    def fuse_batch(lrms, pan, sensor, ratio, lms=None):
        return np.asarray(jax.jit(f)(jnp.asarray(lrms, jnp.float32), jnp.asarray(pan, jnp.float32)))

    return Method("linconv", "LinConv", fuse_batch, "test", jax_fn=lambda s, r: f), params


def test_linear_conv_net_has_no_nonlinear_part_and_the_analytic_pan_response():
    bands = 2
    method, params = _conv_method(bands)
    scene = _scene(bands, h=24, seed=2)
    res = hyra(method, scene, size=33, nfft=64)
    dec = res.decomposition
    scale = np.abs(dec.interior(dec.output)).max()
    assert np.abs(dec.interior(dec.nonlinear)).max() < 1e-5 * max(scale, 1.0)
    # flax Conv is a cross-correlation: its impulse response is the flipped kernel; two
    # layers compose by full convolution, summed over the 3 hidden channels.
    w1, w2 = np.asarray(params["c1"]["kernel"], np.float64), np.asarray(params["c2"]["kernel"], np.float64)
    for c in range(bands):
        comp = sum(convolve2d(w1[::-1, ::-1, bands, f], w2[::-1, ::-1, f, c]) for f in range(3))  # 7x7
        kern = np.zeros((33, 33))
        kern[13:20, 13:20] = comp
        np.testing.assert_allclose(res.transfer.pan[c], dtft_2d(kern, 64), atol=1e-4)
    # one PAN kernel per phase, all equal (a conv net is shift-invariant on the PAN grid)
    assert res.responses.pan.shape[0] == R * R
    np.testing.assert_allclose(res.responses.pan, res.responses.pan[:1].repeat(R * R, 0), atol=1e-5)
    # finite differences agree with derivatives for a linear system
    diff = impulse_responses(method, scene, size=33, linearization="difference", amplitude=0.1)
    np.testing.assert_allclose(diff.ms, res.responses.ms, atol=1e-4)


def test_quadratic_pan_injection_is_nonlinear_with_the_expected_derivative():
    scene = _scene(1, h=24, seed=3)

    def f(lrms, pan):
        return imresize_bicubic(lrms, R) + 2.0 * (pan - 0.5) ** 2

    def fuse_batch(lrms, pan, sensor, ratio, lms=None):
        with jax.enable_x64(True):
            return np.asarray(f(jnp.asarray(lrms), jnp.asarray(pan)))

    method = Method("quad", "Quad", fuse_batch, "test", jax_fn=lambda s, r: f, dtype="float64")
    res = hyra(method, scene, size=33, nfft=64, pan_phases="one")
    m = float(scene.pan.mean())
    # d/dpan of 2 (pan - 0.5)^2 at the flat background: 4 (m - 0.5), a delta: flat transfer
    np.testing.assert_allclose(np.abs(res.transfer.pan[0]), abs(4 * (m - 0.5)), atol=1e-9)
    assert res.summary["hf_share_nonlinear"] > 0.3
    # the non-linear part is exactly 2 (pan - m)^2 minus its interior mean
    dec = res.decomposition
    expected = 2.0 * (scene.pan - m) ** 2
    inner = dec.interior(expected - dec.nonlinear)
    assert np.ptp(inner) < 1e-9


def test_hf_energy_counts_only_frequencies_above_the_ms_nyquist():
    n = 64
    y, x = np.mgrid[0:n, 0:n]
    low = np.cos(2 * np.pi * 0.0625 * x)[..., None]  # 1/16 < 1/8
    high = np.cos(2 * np.pi * 0.25 * x)[..., None]  # 1/4 > 1/8
    assert hf_energy(low, R) < 1e-5 * hf_energy(high, R)  # Hann side lobes only
    # Parseval: all the windowed cosine's energy lies above 1/8 cycles/pixel
    windowed = np.outer(np.hanning(n), np.hanning(n)) * high[..., 0]
    assert hf_energy(high, R) == pytest.approx((windowed**2).sum(), rel=1e-3)
    f, prof = radial_profile(np.ones((16, 16)))
    assert f.shape == prof.shape == (8,)
    np.testing.assert_allclose(prof[np.isfinite(prof)], 1.0)


def test_bad_options_and_statistics_methods_raise_input_errors():
    scene = _scene()
    method = _bicubic_method(True)
    with pytest.raises(InputError, match="odd"):
        impulse_responses(method, scene, size=32)
    with pytest.raises(InputError, match="background"):
        impulse_responses(method, scene, background="grey")
    with pytest.raises(InputError, match="too small"):
        impulse_responses(method, scene, background="scene", size=129)

    def stats(lrms, pan):  # divides by the PAN's range, zero on a flat image
        spread = pan.max(axis=(-3, -2), keepdims=True) - pan.min(axis=(-3, -2), keepdims=True)
        return interp23tap(lrms, R) * (1.0 + (pan - pan.mean()) / spread)

    def fuse_batch(lrms, pan, sensor, ratio, lms=None):
        with jax.enable_x64(True):
            return np.asarray(stats(jnp.asarray(lrms), jnp.asarray(pan)))

    m = Method("stats", "Stats", fuse_batch, "test", jax_fn=lambda s, r: stats, dtype="float64")
    for how in ("derivative", "difference"):
        with pytest.raises(InputError, match="background 'scene'"):
            impulse_responses(m, scene, size=33, linearization=how, pan_phases="one")
    impulse_responses(m, scene, size=33, background="scene", pan_phases="one")  # fine on the scene


def test_sr_impulse_response_of_bicubic_upsampling_is_the_keys_kernel_at_the_block_centre():
    def up(x):
        with jax.enable_x64(True):
            return np.asarray(imresize_bicubic(jnp.asarray(x, jnp.float64), R))

    resp, (cy, cx) = sr_impulse_response(up, ratio=R, lr_size=9)
    assert (cy, cx) == (R * 4 + 1.5, R * 4 + 1.5)
    n = np.arange(resp.shape[0])
    np.testing.assert_allclose(resp, np.outer(keys((n - cy) / R), keys((n - cx) / R)), atol=1e-12)


def test_sr_net_shapes_and_a_short_training_lowers_the_loss():
    x = jnp.arange(2 * 3 * 3 * 16, dtype=jnp.float32).reshape(2, 3, 3, 16)
    y = np.asarray(depth_to_space(x, 4))
    assert y.shape == (2, 12, 12, 1)
    assert y[1, 4 * 2 + 3, 4 * 1 + 2, 0] == np.asarray(x)[1, 2, 1, 3 * 4 + 2]  # channel dy*4 + dx
    out = SRNet(ratio=4, features=4, depth=1).init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 5, 6, 1)))[0]
    assert out.shape == (1, 20, 24, 1)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    img = 0.5 + 0.25 * np.sin(6 * xx) * np.cos(4 * yy)
    trained = train_sr([img], steps=20, batch=4, patch=8, features=8, depth=2, learning_rate=3e-3)
    assert len(trained.losses) == 20
    assert np.mean(trained.losses[-3:]) < 0.5 * np.mean(trained.losses[:3])
    resp, _ = sr_impulse_response(trained.apply_fn(), ratio=4, lr_size=9, background=0.5, amplitude=0.1)
    assert resp.shape == (36, 36) and np.isfinite(resp).all()


@pytest.fixture(scope="module")
def wv3_crop(data_dir):
    from pansharp_jax.analysis import crop_scene
    from pansharp_jax.data.io import load_scene

    path = data_dir / "rr" / "wv3_cdif.mat"
    if not path.exists():
        pytest.skip("rr/wv3_cdif.mat is not in PANSHARP_DATA")
    return crop_scene(load_scene(path, sensor="WV3", bits=11), 128)


def test_real_scene_mtf_glp_is_linear_and_fusionnet_is_not(wv3_crop, weights_dir):
    from pansharp_jax.methods import resolve

    glp = hyra(resolve("mtf_glp"), wv3_crop, size=33, background="scene")
    assert glp.summary["hf_share_nonlinear"] < 1e-3
    path = weights_dir / "fusionnet" / "WV3" / "fusionnet.pth"
    if not path.exists():
        pytest.skip("fusionnet/WV3/fusionnet.pth is not in PANSHARP_WEIGHTS")
    res = hyra(resolve("fusionnet", weights=str(path)), wv3_crop, size=33)
    dec = res.decomposition
    np.testing.assert_allclose(dec.linear + dec.nonlinear, dec.output, atol=1e-12)
    assert 0.05 < res.summary["hf_share_nonlinear"] < 0.95
    assert res.summary["hf_energy"]["gt"] > 0

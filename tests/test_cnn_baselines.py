"""The CNN baselines (PNN, PanNet, DiCNN, MSDCNN, DRPNN, FusionNet, LAGNet): contract,
published sizes, layer semantics, gradients and trainability; the ``models.fuse`` helper.

Equality with the PyTorch definitions and with the released weights is in test_convert.py.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import jax.test_util
import ml_collections
import numpy as np
import optax
import pytest
import scipy.ndimage

from pansharp_jax.data import wald
from pansharp_jax.errors import InputError
from pansharp_jax.models import cnn_baselines, fuse, registry

METHODS = ("pnn", "pannet", "dicnn", "msdcnn", "drpnn", "fusionnet", "lagnet")

# Unique parameter counts of the authors' released checkpoints (weights/<m>/PARAMS.txt:
# QB/WV4 files are 4-band, WV2/WV3 files 8-band). LAGNet has no released file: its counts
# come from the LAGConv definition and are checked against a PyTorch build in test_convert.py.
RELEASED_PARAMS = {
    "pnn": (80_420, 104_360),
    "pannet": (77_640, 83_024),
    "dicnn": (42_180, 46_792),
    "msdcnn": (189_852, 228_556),
    "drpnn": (418_365, 433_465),
    "fusionnet": (76_324, 78_632),
    "lagnet": (148_457, 151_397),
}

# Narrow versions for the training tests (the published sizes are slow to compile on CPU).
SMALL = {
    "pnn": {"channels": (16, 8), "kernel_sizes": (5, 3, 3)},
    "pannet": {"channels": 8, "num_res_blocks": 1},
    "dicnn": {"channels": 16},
    "msdcnn": {"deep_channels": (6, 6), "shallow_channels": (8, 8)},
    "drpnn": {"channels": 8, "num_blocks": 1, "kernel_size": 3},
    "fusionnet": {"channels": 8, "num_res_blocks": 1},
    "lagnet": {"channels": 16, "num_res_blocks": 1},
}

# Flax draws each parameter with the default threefry PRNG, whose XLA CPU compile dominates
# these tests; the counter-based RBG keys give the same distributions much faster.
KEY = functools.partial(jax.random.key, impl="unsafe_rbg")


def _config(name: str, bands: int, small: bool = False) -> ml_collections.ConfigDict:
    cfg = registry.default_config(name)
    cfg.bands = bands
    if small:
        cfg.update(SMALL[name])
    return cfg


def _shapes(bands: int, n: int = 1, h: int = 8, ratio: int = 4) -> tuple[jax.ShapeDtypeStruct, ...]:
    f = jnp.float32
    return (
        jax.ShapeDtypeStruct((n, h, h, bands), f),
        jax.ShapeDtypeStruct((n, ratio * h, ratio * h, 1), f),
        jax.ShapeDtypeStruct((n, ratio * h, ratio * h, bands), f),
    )


def _n_params(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _smooth_batch(n: int = 2, size: int = 16, bands: int = 4, seed: int = 0) -> tuple[jax.Array, ...]:
    """(gt, lrms, pan, lms): random sums of low-frequency sinusoids around 0.4, block-mean LRMS."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    gt = np.full((n, size, size, bands), 0.4)
    for i in range(n):
        for c in range(bands):
            for _ in range(3):
                fy, fx = rng.uniform(0.5, 3.0, 2)
                gt[i, :, :, c] += 0.1 * np.sin(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 2 * np.pi))
    pan = gt.mean(-1, keepdims=True)
    lrms = gt.reshape(n, size // 4, 4, size // 4, 4, bands).mean((2, 4))
    lms = wald.interp23tap(jnp.asarray(lrms, jnp.float32), 4)
    return tuple(jnp.asarray(a, jnp.float32) for a in (gt, lrms, pan, lms))


def test_registry_lists_every_baseline() -> None:
    assert set(METHODS) <= set(registry.names())
    for name in METHODS:
        entry = registry.get(name.upper())
        cfg = entry.default_config()
        assert cfg.name == name and cfg.bands == 8 and entry.description
        assert registry.build_model(cfg) == entry.build(cfg)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("bands", [4, 8])
def test_published_size_parameter_count_and_output_shape(name: str, bands: int) -> None:
    module = registry.build_model(_config(name, bands))
    lrms, pan, lms = _shapes(bands, n=2, h=16)
    variables = jax.eval_shape(module.init, jax.random.key(0), lrms, pan, lms)
    assert _n_params(variables["params"]) == RELEASED_PARAMS[name][bands // 8]
    out = jax.eval_shape(lambda v, *a: module.apply(v, *a, train=False), variables, lrms, pan, lms)
    assert out.shape == (2, 64, 64, bands) and out.dtype == jnp.float32


@functools.lru_cache(maxsize=None)
def _train(name: str, steps: int = 300, lr: float = 3e-3) -> dict[str, float]:
    """Fit the narrow model to one tiny batch with Adam; report first grads and losses."""
    gt, lrms, pan, lms = _smooth_batch()
    module = registry.build_model(_config(name, 4, small=True))
    params = jax.jit(module.init)(KEY(0), lrms, pan, lms)["params"]
    opt = optax.adam(lr)

    def loss_fn(p):
        return jnp.mean((module.apply({"params": p}, lrms, pan, lms) - gt) ** 2)

    @jax.jit
    def step(p, s):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(grads, s, p)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        norm = optax.tree.norm(grads)
        return optax.apply_updates(p, updates), s, loss, finite, norm

    state = opt.init(params)
    params, state, loss0, finite, norm = step(params, state)
    for _ in range(steps - 1):
        params, state, _, _, _ = step(params, state)
    final = float(jax.jit(loss_fn)(params))
    return {"loss0": float(loss0), "final": final, "finite": bool(finite), "grad_norm": float(norm)}


@pytest.mark.parametrize("name", METHODS)
def test_gradients_finite(name: str) -> None:
    r = _train(name)
    assert r["finite"] and 0.0 < r["grad_norm"] < 1e6, r


@pytest.mark.parametrize("name", METHODS)
def test_overfits_one_tiny_batch(name: str) -> None:
    r = _train(name)
    assert r["final"] < 0.1 * r["loss0"], r


# ---------------------------------------------------------------------------- layer semantics


def test_initialisers_follow_the_toolbox_and_pytorch() -> None:
    fan_in = 3 * 3 * 64
    w = np.asarray(cnn_baselines.udl_variance_scaling(KEY(0), (3, 3, 64, 64)))
    std = math.sqrt(2.6 / fan_in)  # N(0, 1) truncated to (-2, 2) has std 0.8796
    assert np.abs(w).max() < 2 * std and abs(w.std() / (0.8796 * std) - 1) < 0.03
    u = np.asarray(cnn_baselines.torch_default_uniform(fan_in)(KEY(1), (3, 3, 64, 64)))
    assert np.abs(u).max() <= 1 / math.sqrt(fan_in) and abs(u.std() * math.sqrt(3 * fan_in) - 1) < 0.03


def test_conv_transpose_scatters_the_kernel_like_pytorch() -> None:
    """A unit impulse at (i, j) puts w[kh, kw] at (i*s - p + kh, j*s - p + kw) (ConvTranspose2d)."""
    k, s, p = 8, 4, 2
    layer = cnn_baselines.ConvTranspose2d(features=1, kernel_size=k, stride=s, padding=p)
    w = np.arange(k * k, dtype=np.float32).reshape(k, k, 1, 1) + 1.0
    params = {"kernel": jnp.asarray(w), "bias": jnp.zeros(1)}
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1, 2, 0] = 1.0
    y = np.asarray(layer.apply({"params": params}, jnp.asarray(x)))[0, :, :, 0]
    assert y.shape == (16, 16)
    want = np.zeros((16, 16), np.float32)
    for kh in range(k):
        for kw in range(k):
            r, c = 1 * s - p + kh, 2 * s - p + kw
            if 0 <= r < 16 and 0 <= c < 16:
                want[r, c] = w[kh, kw, 0, 0]
    np.testing.assert_array_equal(y, want)


def test_box_highpass_is_opencv_get_edge() -> None:
    """x - 5x5 box mean with reflect-101 borders (scipy 'mirror' = OpenCV BORDER_REFLECT_101)."""
    x = np.random.default_rng(3).uniform(size=(2, 9, 7, 3)).astype(np.float32)
    got = np.asarray(cnn_baselines.box_highpass(jnp.asarray(x), 5))
    want = x - scipy.ndimage.uniform_filter(x.astype(np.float64), size=(1, 5, 5, 1), mode="mirror")
    np.testing.assert_allclose(got, want, atol=2e-7)
    with pytest.raises(InputError, match="larger than"):
        cnn_baselines.box_highpass(jnp.zeros((1, 2, 8, 1)), 5)


def test_unfold_values_and_derivatives() -> None:
    """unfold = the (c, kh, kw)-ordered 3x3 patches; its custom JVP is exact (forward and reverse)."""
    x = jax.random.normal(jax.random.key(5), (2, 5, 6, 3))
    cols = np.asarray(cnn_baselines.unfold(x, 3)).reshape(2, 5, 6, 3, 3, 3)
    xp = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
    np.testing.assert_array_equal(cols[1, 2, 4], xp[1, 2:5, 4:7, :].transpose(2, 0, 1))
    jax.test_util.check_grads(lambda v: jnp.sin(cnn_baselines.unfold(v, 3)), (x,), order=1, modes=("fwd", "rev"))


def test_lagconv_equals_its_definition() -> None:
    """LAGConv against a plain per-pixel loop of y = sum_{c,t} a_t x_{p+t,c} W_{t,c} + g."""
    cin, cout, h = 3, 2, 5
    layer = cnn_baselines.LAGConv(cout)
    x = np.random.default_rng(4).normal(size=(1, h, h, cin)).astype(np.float32)
    params = jax.jit(layer.init)(KEY(1), jnp.asarray(x))["params"]
    y = np.asarray(layer.apply({"params": params}, jnp.asarray(x)))

    def conv(name, inp, pad):
        k, b = np.asarray(params[name]["kernel"], np.float64), np.asarray(params[name]["bias"], np.float64)
        kh = k.shape[0]
        xp = np.pad(inp, ((pad, pad), (pad, pad), (0, 0)))
        out = np.zeros((inp.shape[0], inp.shape[1], k.shape[-1]))
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = np.einsum("abc,abco->o", xp[i : i + kh, j : j + kh], k) + b
        return out

    x0 = x[0].astype(np.float64)
    a = np.maximum(conv("attention1_0", x0, 1), 0)
    a = np.maximum(conv("attention1_2", a, 0), 0)
    a = 1 / (1 + np.exp(-conv("attention1_4", a, 0)))
    g = np.maximum(conv("attention3_1", x0.mean((0, 1), keepdims=True), 0), 0)
    g = conv("attention3_3", g, 0)[0, 0]
    w = np.asarray(params["kernel"], np.float64)  # (3, 3, cin, cout)
    xp = np.pad(x0, ((1, 1), (1, 1), (0, 0)))
    want = np.zeros((h, h, cout))
    for i in range(h):
        for j in range(h):
            patch = xp[i : i + 3, j : j + 3] * a[i, j].reshape(3, 3, 1)
            want[i, j] = np.einsum("abc,abco->o", patch, w) + g
    np.testing.assert_allclose(y[0], want, atol=1e-5)


def test_inputs_are_checked() -> None:
    module = registry.build_model(_config("dicnn", 4, small=True))
    lrms, pan, lms = (jnp.zeros(s.shape) for s in _shapes(4))
    with pytest.raises(InputError, match="bands"):
        jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)), pan, jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(InputError, match="1 band"):
        jax.eval_shape(module.init, jax.random.key(0), lrms, jnp.zeros((1, 32, 32, 2)), lms)
    pannet = registry.build_model(_config("pannet", 4, small=True))
    with pytest.raises(InputError, match="ratio 4"):
        jax.eval_shape(pannet.init, jax.random.key(0), jnp.zeros((1, 16, 16, 4)), pan, lms)
    bad_configs = [
        ("dicnn", {"channels": 0}, "positive integer"),
        ("dicnn", {"channels": "x"}, "positive integer"),
        ("dicnn", {"bands": -1}, "positive integer"),
        ("msdcnn", {"deep_channels": (60, 31)}, "multiples of 3"),
        ("pnn", {"kernel_sizes": (9, 4, 5)}, "odd"),
        ("pannet", {"ratio": 3}, "even"),
    ]
    for name, bad, match in bad_configs:
        with pytest.raises(InputError, match=match):
            registry.build_model({**_config(name, 4).to_dict(), **bad})


# ---------------------------------------------------------------------------- fuse


def test_fuse_hwc_nhwc_jit_and_errors() -> None:
    cfg = _config("dicnn", 4, small=True)
    gt, lrms, pan, lms = _smooth_batch()
    module = registry.build_model(cfg)
    params = jax.jit(module.init)(KEY(2), lrms, pan, lms)["params"]
    direct = np.asarray(module.apply({"params": params}, lrms, pan, lms))
    batch = np.asarray(fuse(params, lrms, pan, model_config=cfg))
    np.testing.assert_allclose(batch, direct, atol=1e-6)
    one = np.asarray(fuse({"params": params}, lrms[1], pan[1, ..., 0], model_config=cfg))  # HWC, (H, W) PAN
    np.testing.assert_allclose(one, direct[1], atol=1e-6)
    jitted = jax.jit(functools.partial(fuse, model_config=cfg, clip=True))
    np.testing.assert_allclose(np.asarray(jitted(params, lrms, pan)), np.clip(direct, 0.0, 1.0), atol=1e-6)
    assert direct.max() > 1.0 or direct.min() < 0.0  # so that clipping was exercised
    with pytest.raises(InputError, match="multiple"):
        fuse(params, lrms, pan[:, :15], model_config=cfg)
    with pytest.raises(InputError, match="bands"):
        fuse(params, lrms[..., :3], pan, model_config=cfg)
    with pytest.raises(InputError, match="unknown model"):
        fuse(params, lrms, pan, model_config={"name": "nope", "bands": 4})

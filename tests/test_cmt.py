"""CMT: shapes on two sizes with one set of params, parameter count, the cross modulation
attention against a NumPy formula, overfitting a tiny batch, determinism, registry/config."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.models import cmt, registry
from pansharp_jax.train import losses

TINY = {"channels": 8, "num_blocks": 1, "heads": 2, "ffn_expansion": 2.0, "num_res_blocks": 1}


def _cfg(bands: int, **sizes: object) -> ml_collections.ConfigDict:
    c = registry.default_config("cmt")
    c.bands = bands
    c.update(sizes)
    return c


def _inputs(key: jax.Array, n: int, h: int, w: int, bands: int, ratio: int = 4) -> tuple[jax.Array, ...]:
    k1, k2, k3 = jax.random.split(key, 3)
    lrms = jax.random.uniform(k1, (n, h, w, bands))
    pan = jax.random.uniform(k2, (n, ratio * h, ratio * w, 1))
    lms = jnp.repeat(jnp.repeat(lrms, ratio, axis=1), ratio, axis=2) + 0.01 * jax.random.normal(
        k3, (n, ratio * h, ratio * w, bands)
    )
    return lrms, pan, lms


def _count(tree: object) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def hand_count(bands: int, d: int = 32, blocks: int = 4, heads: int = 4, expansion: float = 2.0, res: int = 2) -> int:
    """The parameter count of the documented CMT structure, from its layer list."""
    f = int(d * expansion)
    conv = lambda k, cin, cout: k * k * cin * cout + cout  # noqa: E731
    extract = conv(3, 1, d) + conv(3, d, d) + conv(3, bands, d) + conv(3, d, d)
    branch = (
        3 * 2 * d  # three LayerNorms (scale + bias)
        + conv(1, d, 3 * d) + (9 * 3 * d + 3 * d)  # qkv + depthwise
        + conv(1, d, d) + (9 * d + d)  # modulator + depthwise
        + heads  # temperatures
        + conv(1, d, d)  # output projection
        + conv(1, d, 2 * f) + (9 * 2 * f + 2 * f) + conv(1, f, d)  # GDFN
    )
    aggregate = conv(3, 2 * d, d) + res * 2 * conv(3, d, d) + conv(3, d, bands)
    return extract + blocks * 2 * branch + aggregate


def test_shapes_two_sizes_same_params_and_param_count() -> None:
    for bands in (8, 4):  # the default sizes: shapes only (no compute)
        module = registry.build_model(_cfg(bands))
        lrms, pan, lms = _inputs(jax.random.key(0), 2, 16, 16, bands)
        init = lambda a, b, c, m=module: m.init_with_output(jax.random.key(1), a, b, c)  # noqa: E731
        out, variables = jax.eval_shape(init, lrms, pan, lms)
        n = _count(variables["params"])
        print(f"CMT params, {bands} bands: {n:,} (hand count {hand_count(bands):,})")
        assert n == hand_count(bands)
        assert out.shape == (2, 64, 64, bands)
    assert hand_count(8) == 193_640 and hand_count(4) == 191_332  # the sizes quoted in the docstring
    # one set of (tiny) params on a square patch and on a non-square size, odd on the MS grid
    module = registry.build_model(_cfg(4, **TINY))
    lrms, pan, lms = _inputs(jax.random.key(0), 2, 8, 8, 4)
    params = jax.jit(module.init)(jax.random.key(1), lrms, pan, lms)["params"]
    assert _count(params) == hand_count(4, d=8, blocks=1, heads=2, res=1)
    apply = jax.jit(module.apply)
    assert apply({"params": params}, lrms, pan, lms).shape == (2, 32, 32, 4)
    lrms2, pan2, lms2 = _inputs(jax.random.key(2), 1, 13, 7, 4)
    out = apply({"params": params}, lrms2, pan2, lms2)
    assert out.shape == (1, 52, 28, 4) and bool(jnp.all(jnp.isfinite(out)))


def np_dwconv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Depthwise 3x3 cross-correlation with zero padding, x (H, W, D), kernel (3, 3, 1, D)."""
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros_like(x) + bias
    for i in range(3):
        for j in range(3):
            out += xp[i : i + h, j : j + w] * kernel[i, j, 0]
    return out


def np_cma(p: dict, carrier: np.ndarray, modulator: np.ndarray, heads: int, modulation: str) -> np.ndarray:
    """Cross modulation (channel) attention for one image (H, W, D), from the params."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    h, w, d = carrier.shape

    def c1(x: np.ndarray, q: dict) -> np.ndarray:
        return x @ q["kernel"][0, 0] + q["bias"]

    qkv = np_dwconv(c1(carrier, p["qkv"]), p["qkv_dwconv"]["kernel"], p["qkv_dwconv"]["bias"])
    q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
    if modulation != "none":
        m = np_dwconv(c1(modulator, p["mod"]), p["mod_dwconv"]["kernel"], p["mod_dwconv"]["bias"])
        v = v * m if modulation == "dsb" else v * (1 + m)
    c = d // heads
    out = np.zeros((h * w, d))
    for i in range(heads):
        sl = slice(i * c, (i + 1) * c)
        qi, ki, vi = (t.reshape(h * w, d)[:, sl].T for t in (q, k, v))  # (c, HW)
        qi = qi / np.linalg.norm(qi, axis=1, keepdims=True)
        ki = ki / np.linalg.norm(ki, axis=1, keepdims=True)
        logits = qi @ ki.T * p["temperature"][i, 0, 0]
        a = np.exp(logits - logits.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        out[:, sl] = (a @ vi).T
    return c1(out.reshape(h, w, d), p["project_out"])


@pytest.mark.parametrize("modulation", ["dsb", "am", "none"])
def test_cross_modulation_attention_equals_numpy(modulation: str) -> None:
    layer = cmt.CrossModulationAttention(channels=8, heads=2, modulation=modulation)
    kc, km, ki, kt = jax.random.split(jax.random.key(3), 4)
    carrier = jax.random.normal(kc, (2, 6, 5, 8))
    modulator = jax.random.normal(km, (2, 6, 5, 8))
    params = layer.init(ki, carrier, modulator)["params"]
    params["temperature"] = jax.random.uniform(kt, (2, 1, 1), minval=0.5, maxval=2.0)
    got = np.asarray(layer.apply({"params": params}, carrier, modulator))
    for b in range(2):
        ref = np_cma(params, np.asarray(carrier[b], np.float64), np.asarray(modulator[b], np.float64), 2, modulation)
        np.testing.assert_allclose(got[b], ref, rtol=2e-4, atol=2e-5)
    # the modulator reaches the output only through the modulated value
    other = np.asarray(layer.apply({"params": params}, carrier, 2.0 * modulator))
    assert (np.abs(other - got).max() > 1e-3) == (modulation != "none")


def test_overfits_a_tiny_batch_with_the_hybrid_loss() -> None:
    module = registry.build_model(_cfg(4, **TINY))
    lrms, pan, lms = _inputs(jax.random.key(4), 2, 4, 4, 4)
    gt = lms + 0.1 * jnp.tanh(4 * (pan - 0.5)) * jnp.linspace(0.5, 1.0, 4)  # PAN detail injected per band
    params = jax.jit(module.init)(jax.random.key(5), lrms, pan, lms)["params"]
    loss_fn = losses.get_loss("hybrid", {"l1": 1.0, "fft": 0.1, "dwt": 0.1, "wavelet": "haar", "levels": 2})
    opt = optax.adam(5e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params: dict, opt_state: optax.OptState) -> tuple[dict, optax.OptState, jax.Array]:
        value, grads = jax.value_and_grad(lambda q: loss_fn(module.apply({"params": q}, lrms, pan, lms), gt))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    t0 = time.perf_counter()
    first = None
    for i in range(200):
        params, opt_state, value = step(params, opt_state)
        first = float(value) if i == 0 else first
    last = float(loss_fn(module.apply({"params": params}, lrms, pan, lms), gt))
    print(f"overfit: hybrid loss {first:.4g} -> {last:.4g} in 200 steps ({time.perf_counter() - t0:.1f} s)")
    assert np.isfinite(last) and last < first / 10


def test_deterministic_and_jit_equal() -> None:
    module = registry.build_model(_cfg(8, **TINY))
    lrms, pan, lms = _inputs(jax.random.key(6), 1, 8, 8, 8)
    p1 = module.init(jax.random.key(7), lrms, pan, lms)["params"]
    p2 = module.init(jax.random.key(7), lrms, pan, lms)["params"]
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), p1, p2))
    eager = module.apply({"params": p1}, lrms, pan, lms)
    again = module.apply({"params": p1}, lrms, pan, lms, train=True)
    jitted = jax.jit(lambda p: module.apply({"params": p}, lrms, pan, lms))(p1)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(again))
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-5)
    p3 = module.init(jax.random.key(8), lrms, pan, lms)["params"]
    assert not np.allclose(np.asarray(module.apply({"params": p3}, lrms, pan, lms)), np.asarray(eager))


def test_registry_and_bad_configs() -> None:
    assert "cmt" in registry.names()
    c = registry.default_config("cmt")
    assert (c.channels, c.num_blocks, c.heads, c.modulation) == (32, 4, 4, "dsb")
    for bad in ({"heads": 3}, {"modulation": "fm"}, {"channels": 0}, {"ffn_expansion": 0.0}):
        with pytest.raises(InputError):
            registry.build_model(_cfg(8, **bad))
    module = registry.build_model(_cfg(8, **TINY))
    lrms, pan, lms = _inputs(jax.random.key(9), 1, 4, 4, 4)
    with pytest.raises(InputError):
        module.init(jax.random.key(0), lrms, pan, lms)  # 4-band inputs to an 8-band model

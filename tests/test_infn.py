"""INFN: any output scale from one set of params, the INR-CS query against NumPy, DHFF high-pass,
finite gradients into both encoders, a tiny overfit, config errors."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.ndimage import correlate

from pansharp_jax.data.resize import imresize_bicubic
from pansharp_jax.errors import InputError
from pansharp_jax.models import registry
from pansharp_jax.models.infn import INFN, INFNQuery, build_infn, highpass

B, K, H, R = 5, 3, 8, 4  # bands, guide bands, LR side, ratio
TINY = dict(bands=B, guide_bands=K, feats=8, blocks=1, hidden=(16,), query_chunk=0)


def sample(seed: int = 0, n: int = 1) -> dict[str, jax.Array]:
    """Smooth spectra x detail: lrms = 4 x 4 block mean of gt, guide = gt @ SRF, lms = bicubic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, H * R), np.linspace(0, 1, H * R), indexing="ij")
    detail = 0.5 + 0.25 * np.sin(9 * xx + 5 * yy)[None, ..., None] * np.sign(np.sin(13 * yy))[None, ..., None]
    gt = np.clip(rng.uniform(0.2, 0.8, (n, 1, 1, B)) * detail, 0, 1)
    lrms = gt.reshape(n, H, R, H, R, B).mean(axis=(2, 4))
    srf = rng.uniform(0, 1, (B, K))
    pan = gt @ (srf / srf.sum(0))
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return {"lrms": f32(lrms), "pan": f32(pan), "lms": imresize_bicubic(f32(lrms), R), "gt": f32(gt)}


@pytest.fixture(scope="module")
def data() -> dict[str, jax.Array]:
    return sample(0, 2)


@pytest.fixture(scope="module")
def model_params(data: dict[str, jax.Array]) -> tuple[INFN, dict]:
    model = INFN(**TINY, zero_out=False)
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), data["lrms"], data["pan"], data["lms"])["params"]


@functools.partial(jax.jit, static_argnames=("model", "scale"))
def _apply(model: INFN, params: dict, lrms: jax.Array, pan: jax.Array, lms: jax.Array, scale: float | None = None) -> jax.Array:
    return model.apply({"params": params}, lrms, pan, lms, scale=scale)


def test_any_scale_from_the_same_params(model_params: tuple[INFN, dict], data: dict[str, jax.Array]) -> None:
    model, params = model_params
    args = (data["lrms"], data["pan"], data["lms"])
    out = _apply(model, params, *args)
    assert out.shape == (2, H * R, H * R, B) and bool(jnp.all(jnp.isfinite(out)))
    for scale, side in ((3.0, 24), (6.0, 48)):
        o = _apply(model, params, *args, scale=scale)
        assert o.shape == (2, side, side, B) and bool(jnp.all(jnp.isfinite(o)))
    np.testing.assert_allclose(_apply(model, params, *args, scale=4.0), out, atol=1e-6)  # the guide's grid = default
    chunked = model.clone(query_chunk=100)  # nn.scan over 100-query chunks: same params, same output
    assert jax.tree.structure(jax.eval_shape(chunked.init, jax.random.PRNGKey(0), *args)["params"]) == jax.tree.structure(params)
    np.testing.assert_allclose(_apply(chunked, params, *args), out, atol=1e-5)
    with pytest.raises(InputError, match="guide"):
        model.apply({"params": params}, data["lrms"], data["pan"][..., :1], data["lms"])


def _neighbours_np(h: int, w: int, y: float, x: float) -> list[tuple[int, int, float, float]]:
    """LIIF's 4 neighbour cells of (y, x): (iy, ix, rel_y, rel_x), written out from the convention."""
    out = []
    for vy in (-1, 1):
        for vx in (-1, 1):
            qy = min(max(y + vy / h + 1e-6, -1 + 1e-6), 1 - 1e-6)
            qx = min(max(x + vx / w + 1e-6, -1 + 1e-6), 1 - 1e-6)
            iy, ix = min(int(np.floor((qy + 1) * h / 2)), h - 1), min(int(np.floor((qx + 1) * w / 2)), w - 1)
            cy, cx = -1 + (2 * iy + 1) / h, -1 + (2 * ix + 1) / w
            out.append((iy, ix, (y - cy) * h, (x - cx) * w))
    return out


def test_inr_cs_query_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    f, h, w, hh, ww = 4, 3, 5, 9, 15
    z, hr = rng.normal(size=(1, h, w, f)), rng.normal(size=(1, hh, ww, f))
    lr_cat = np.concatenate([z, correlate(z, np.asarray([[0, -1, 0], [-1, 1, -1], [0, -1, 0]])[None, :, :, None], mode="constant")], -1)
    np.testing.assert_allclose(highpass(jnp.asarray(z, jnp.float32)), lr_cat[..., f:], atol=1e-5)
    ys, xs = -1 + (2 * np.arange(hh) + 1) / hh, -1 + (2 * np.arange(ww) + 1) / ww
    coords = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(1, -1, 2)
    q = INFNQuery(out_dim=2, hidden=(6,), weighting="cosine", temperature=0.5, cs_pair="latent")
    args = (jnp.asarray(coords, jnp.float32), jnp.zeros(2), jnp.asarray(lr_cat, jnp.float32), jnp.asarray(hr, jnp.float32))
    p = q.init(jax.random.PRNGKey(1), None, *args)["params"]["mlp"]
    out = np.asarray(q.apply({"params": {"mlp": p}}, None, *args)[1])[0]
    w0, b0, w1, b1 = (np.asarray(a, np.float64) for a in (p["dense_0"]["kernel"], p["dense_0"]["bias"], p["out"]["kernel"], p["out"]["bias"]))
    for k, (y, x) in enumerate(coords[0]):
        g = hr[0, k // ww, k % ww]  # the guide's own grid: nearest = the pixel itself
        preds, cos = [], []
        for iy, ix, ry, rx in _neighbours_np(h, w, y, x):
            zj, hpj = lr_cat[0, iy, ix, :f], lr_cat[0, iy, ix, f:]
            preds.append(np.maximum(np.concatenate([zj, g, hpj, [ry, rx]]) @ w0 + b0, 0) @ w1 + b1)
            cos.append(zj @ g / (np.linalg.norm(zj) * np.linalg.norm(g)))
        e = np.exp(np.asarray(cos) / 0.5)
        np.testing.assert_allclose(out[k], (e / e.sum()) @ np.asarray(preds), rtol=1e-4, atol=1e-5)


def test_zero_out_starts_as_the_bicubic_base(model_params: tuple[INFN, dict], data: dict[str, jax.Array]) -> None:
    model, params = model_params
    zeroed = jax.tree_util.tree_map_with_path(lambda k, a: jnp.zeros_like(a) if "out" in jax.tree_util.keystr(k) else a, params)
    np.testing.assert_array_equal(_apply(model, zeroed, data["lrms"], data["pan"], data["lms"]), data["lms"])
    init = jax.eval_shape(INFN(**TINY).init, jax.random.PRNGKey(0), data["lrms"], data["pan"], data["lms"])
    assert jax.tree.structure(init["params"]) == jax.tree.structure(params)


def test_tiny_overfit_with_finite_gradients_into_both_encoders(model_params: tuple[INFN, dict], data: dict[str, jax.Array]) -> None:
    model, params = model_params
    params = jax.tree_util.tree_map_with_path(lambda k, a: jnp.zeros_like(a) if "out" in jax.tree_util.keystr(k) else a, params)
    final, finite, trained = overfit(model, params, data)  # from the bicubic base (zero_out)
    bicubic = float(jnp.mean(jnp.abs(data["lms"] - data["gt"])))
    assert bool(finite)
    assert float(final) < 0.5 * bicubic, (float(final), bicubic)
    for name in ("spatial_encoder", "spectral_encoder", "query"):
        moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), trained[name], params[name])
        assert min(jax.tree.leaves(moved)) > 0, name


def overfit(model: Any, params: dict, data: dict[str, jax.Array], steps: int = 40) -> tuple[jax.Array, jax.Array, dict]:
    """``steps`` Adam (3e-3) L1 steps on ``data``: (final loss, all gradients finite, params)."""
    tx = optax.adam(3e-3)

    def loss(p: dict) -> jax.Array:
        return jnp.mean(jnp.abs(model.apply({"params": p}, data["lrms"], data["pan"], data["lms"]) - data["gt"]))

    @jax.jit
    def run(p: dict) -> tuple[jax.Array, jax.Array, dict]:
        def step(carry: tuple, _: None) -> tuple:
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p)
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)]))
            return (optax.apply_updates(p, u), s), finite

        (p, _), finite = jax.lax.scan(step, (p, tx.init(p)), None, length=steps)
        return loss(p), jnp.all(finite), p

    return run(params)


def test_registry_and_config_errors() -> None:
    cfg = registry.default_config("infn")
    assert cfg.feats == 128 and cfg.weighting == "cosine" and isinstance(registry.build_model(cfg), INFN)
    for key, value in (("weighting", "mean"), ("cs_pair", "pan"), ("highpass", "sobel"), ("temperature", 0.0), ("feats", 0)):
        bad = registry.default_config("infn")
        bad[key] = value
        with pytest.raises(InputError, match=key):
            build_infn(bad)

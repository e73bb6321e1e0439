"""INR core: coordinates, LIIF local ensemble (area / cosine / logit weights), any-scale decoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.nn import inr


def _bilinear_np(feat: np.ndarray, y: float, x: float) -> np.ndarray:
    """Bilinear sample of (h, w, C) at (y, x) in [-1, 1], pixel centres at -1 + (2i + 1)/h."""
    h, w, _ = feat.shape
    py, px = (y + 1.0) * h / 2.0 - 0.5, (x + 1.0) * w / 2.0 - 0.5
    i0, j0 = int(np.floor(py)), int(np.floor(px))
    ty, tx = py - i0, px - j0
    out = np.zeros(feat.shape[-1])
    for di, wy in ((0, 1.0 - ty), (1, ty)):
        for dj, wx in ((0, 1.0 - tx), (1, tx)):
            out += wy * wx * feat[min(max(i0 + di, 0), h - 1), min(max(j0 + dj, 0), w - 1)]
    return out


@pytest.fixture(scope="module")
def feat() -> jax.Array:
    return jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 7, 3)), jnp.float32)


@jax.jit
def _area_identity_jit(feat: jax.Array, coords: jax.Array) -> jax.Array:
    nb = inr.local_neighbours(feat, coords)
    return inr.ensemble(nb.feats, inr.area_weights(nb.rel))


def _area_identity(feat: jax.Array, coords: jax.Array) -> np.ndarray:
    return np.asarray(_area_identity_jit(feat, coords))


def test_make_coord_and_output_size() -> None:
    c = np.asarray(inr.make_coord(4, 2))
    assert c.shape == (4, 2, 2)
    np.testing.assert_allclose(c[:, 0, 0], [-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_allclose(c[0, :, 1], [-0.5, 0.5])
    assert inr.output_size(5, 7, 2.5) == (13, 18)  # 12.5 -> 13 (half up), 17.5 -> 18
    assert inr.output_size(4, 4, 2.5) == (10, 10)
    assert inr.output_size(3, 3, (1.5, 3.0)) == (5, 9)
    with pytest.raises(InputError):
        inr.output_size(3, 3, 0.0)


def test_area_ensemble_reproduces_the_map_at_its_own_grid(feat: jax.Array) -> None:
    out = _area_identity(feat, inr.make_coord(5, 7).reshape(-1, 2))
    np.testing.assert_allclose(out.reshape(feat.shape), np.asarray(feat), atol=1e-5)


def test_area_ensemble_is_bilinear_inside(feat: jax.Array) -> None:
    rng = np.random.default_rng(1)
    # strictly between the outermost cell centres
    ys = rng.uniform(-1 + 1 / 5, 1 - 1 / 5, 50)
    xs = rng.uniform(-1 + 1 / 7, 1 - 1 / 7, 50)
    out = _area_identity(feat, jnp.asarray(np.stack([ys, xs], -1), jnp.float32))
    f = np.asarray(feat, np.float64)
    ref = np.stack([[_bilinear_np(f[n], y, x) for y, x in zip(ys, xs)] for n in range(2)])
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_area_ensemble_x2_grid_inside_matches_bilinear_resize(feat: jax.Array) -> None:
    coords, _, (hh, ww) = inr.grid_query(5, 7, 2)
    out = _area_identity(feat, coords).reshape(2, hh, ww, 3)
    f = np.asarray(feat, np.float64)
    c = np.asarray(coords).reshape(hh, ww, 2)
    for i in range(1, hh - 1):
        for j in range(1, ww - 1):
            np.testing.assert_allclose(out[1, i, j], _bilinear_np(f[1], *c[i, j]), atol=1e-5)


def test_cosine_weights_match_numpy_softmax() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(4, 1, 6, 5))
    g = rng.normal(size=(1, 6, 5))
    cos = np.sum(z * g[None], -1) / (np.linalg.norm(z, axis=-1) * np.linalg.norm(g, axis=-1)[None])
    e = np.exp(cos / 0.5)
    ref = e / e.sum(0, keepdims=True)
    out = np.asarray(inr.cosine_weights(jnp.asarray(z), jnp.asarray(g), temperature=0.5))
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    # a guide equal to one neighbour's feature favours that neighbour
    w = np.asarray(inr.cosine_weights(jnp.asarray(z), jnp.asarray(z[2]), temperature=0.05))
    assert np.all(np.argmax(w, axis=0) == 2)
    with pytest.raises(InputError):
        inr.cosine_weights(jnp.asarray(z), jnp.asarray(g[..., :3]))


def test_decoder_any_scale_from_the_same_params(feat: jax.Array) -> None:
    dec = inr.LocalImplicitDecoder(out_dim=4, hidden=(16, 16))
    coords, cell, _ = inr.grid_query(5, 7, 2.5)
    params = dec.init(jax.random.PRNGKey(0), feat, coords, cell)
    apply = jax.jit(dec.apply)
    for scale, hw in ((3, (15, 21)), (6, (30, 42)), (2.5, (13, 18))):
        coords, cell, size = inr.grid_query(5, 7, scale)
        assert size == hw
        out = apply(params, feat, coords, cell)
        assert out.shape == (2, hw[0] * hw[1], 4)
        assert bool(jnp.all(jnp.isfinite(out)))


def test_decoder_is_continuous_in_the_scale(feat: jax.Array) -> None:
    dec = inr.LocalImplicitDecoder(out_dim=4, hidden=(16, 16))
    coords, cell, _ = inr.grid_query(5, 7, 2.5)
    params = dec.init(jax.random.PRNGKey(1), feat, coords, cell)
    apply = jax.jit(dec.apply)
    base = apply(params, feat, coords, cell)  # same physical coordinates, scale 2.5 + delta

    def diff(delta: float) -> float:
        _, cell2, _ = inr.grid_query(5, 7, 2.5 + delta)
        return float(jnp.max(jnp.abs(apply(params, feat, coords, cell2) - base)))

    d1, d2 = diff(1e-2), diff(1e-3)
    assert 0 < d2 < d1 < 0.1
    assert 5 < d1 / d2 < 20  # O(delta): ten times smaller step, about ten times smaller change


def test_decoder_cosine_and_logit_weighting(feat: jax.Array) -> None:
    coords, cell, (hh, ww) = inr.grid_query(5, 7, 3)
    guide = jnp.ones((2, hh * ww, 3), jnp.float32)
    for weighting in ("cosine", "logit"):
        dec = inr.LocalImplicitDecoder(out_dim=2, hidden=(8,), weighting=weighting)
        out, _ = jax.jit(dec.init_with_output)(jax.random.PRNGKey(0), feat, coords, cell, guide)
        assert out.shape == (2, hh * ww, 2) and bool(jnp.all(jnp.isfinite(out)))
    dec = inr.LocalImplicitDecoder(out_dim=2, hidden=(8,), weighting="cosine")
    with pytest.raises(InputError):
        dec.init(jax.random.PRNGKey(0), feat, coords, cell)  # no guide
    with pytest.raises(InputError):
        inr.LocalImplicitDecoder(out_dim=2, cell_decode=True).init(jax.random.PRNGKey(0), feat, coords)

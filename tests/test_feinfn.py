"""FeINFN: any output scale from one set of params, the complex Gabor activation and the SFID
decoder against their closed forms, the frequency branch against NumPy FFTs, finite gradients,
a tiny overfit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.models import registry
from pansharp_jax.models.feinfn import SFID, FeINFN, build_feinfn, gabor
from test_infn import B, H, K, R, overfit, sample

TINY = dict(
    bands=B, guide_bands=K, feats=8, blocks=1, spatial_dim=6, spatial_hidden=(12,), amp_hidden=(12,),
    phase_hidden=(12,), decoder_width=12, decoder_layers=2, query_chunk=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def data() -> dict[str, jax.Array]:
    return sample(1, 2)


@pytest.fixture(scope="module")
def model_params(data: dict[str, jax.Array]) -> tuple[FeINFN, dict]:
    model = FeINFN(**TINY, zero_out=False)
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), data["lrms"], data["pan"], data["lms"])["params"]


@functools.partial(jax.jit, static_argnames=("model", "scale"))
def _apply(model: FeINFN, params: dict, lrms: jax.Array, pan: jax.Array, lms: jax.Array, scale: float | None = None) -> jax.Array:
    return model.apply({"params": params}, lrms, pan, lms, scale=scale)


def test_any_scale_from_the_same_params(model_params: tuple[FeINFN, dict], data: dict[str, jax.Array]) -> None:
    model, params = model_params
    args = (data["lrms"], data["pan"], data["lms"])
    out = _apply(model, params, *args)
    assert out.shape == (2, H * R, H * R, B) and bool(jnp.all(jnp.isfinite(out)))
    for scale, side in ((3.0, 24), (6.0, 48)):
        o = _apply(model, params, *args, scale=scale)
        assert o.shape == (2, side, side, B) and bool(jnp.all(jnp.isfinite(o)))
    chunked = model.clone(query_chunk=100)
    np.testing.assert_allclose(_apply(chunked, params, *args), out, atol=1e-5)
    with pytest.raises(InputError, match="bands"):
        model.apply({"params": params}, data["lrms"][..., :3], data["pan"], data["lms"][..., :3])


def test_gabor_is_its_closed_form() -> None:
    u = np.linspace(-0.3, 0.3, 101)
    for omega, s0 in ((30.0, 10.0), (7.5, 2.0)):
        ref = np.exp(-((s0 * u) ** 2)) * (np.cos(omega * u) + 1j * np.sin(omega * u))
        np.testing.assert_allclose(np.asarray(gabor(jnp.asarray(u), omega, s0)), ref, rtol=1e-5, atol=1e-6)
    assert abs(complex(gabor(jnp.asarray(0.0), 30.0, 10.0)) - 1.0) < 1e-7


def test_sfid_decoder_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    s, f = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    dec = SFID(out_dim=3, width=5, layers=2, zero_out=False)
    p = dec.init(jax.random.PRNGKey(0), jnp.asarray(s, jnp.float32), jnp.asarray(f, jnp.float32))["params"]
    p = dict(p)
    p["omega_1"], p["s0_1"] = jnp.asarray(12.0), jnp.asarray(3.0)
    out = np.asarray(dec.apply({"params": p}, jnp.asarray(s, jnp.float32), jnp.asarray(f, jnp.float32)))
    d = lambda name, x: x @ np.asarray(p[name]["kernel"], np.float64) + np.asarray(p[name]["bias"], np.float64)  # noqa: E731
    x = None
    for i in range(2):
        k = np.maximum(d(f"k_{i}", s if x is None else np.concatenate([x, s], -1)), 0)
        u = d(f"q_{i}", f)
        om, sc = float(p[f"omega_{i}"]), float(p[f"s0_{i}"])
        x = k * np.exp(-((sc * u) ** 2)) * np.cos(om * u)  # Re(k psi(u)), k real
    np.testing.assert_allclose(out, d("out", x), rtol=1e-4, atol=1e-5)


def test_frequency_branch_matches_numpy_fft(model_params: tuple[FeINFN, dict], data: dict[str, jax.Array]) -> None:
    model, params = model_params
    fn = jax.jit(lambda p: model.apply({"params": p}, data["lrms"], data["pan"], data["lms"], capture_intermediates=True, mutable=["intermediates"]))
    _, state = fn(params)
    inter = state["intermediates"]
    z = np.asarray(inter["spectral_encoder"]["__call__"][0], np.float64)  # (N, h, w, F)
    hr = np.asarray(inter["spatial_encoder"]["__call__"][0], np.float64)  # (N, H, W, F)
    freq = inter["frequency_iff"]
    np.testing.assert_allclose(freq["amp_lr"][0], np.abs(np.fft.fft2(z, axes=(1, 2))), rtol=1e-4, atol=1e-3)
    spec_hr = np.fft.fft2(hr, axes=(1, 2))
    ok = np.abs(spec_hr) > 1e-2  # the phase of a near-zero coefficient is ill-conditioned
    dphi = np.angle(np.exp(1j * (np.asarray(freq["pha_hr"][0], np.float64) - np.angle(spec_hr))))
    assert np.max(np.abs(dphi[ok])) < 1e-3
    amp, phase = (np.asarray(freq[k][0], np.float64) for k in ("amp_q", "phase_q"))
    ref = np.abs(np.fft.ifft2(amp * np.exp(1j * phase), axes=(1, 2)))
    np.testing.assert_allclose(freq["frequency"][0], ref, rtol=1e-4, atol=1e-5)
    assert amp.shape == (2, H * R, H * R, TINY["spatial_dim"])


def test_zero_out_starts_as_the_bicubic_base(model_params: tuple[FeINFN, dict], data: dict[str, jax.Array]) -> None:
    model, params = model_params
    zeroed = dict(params, decoder=dict(params["decoder"], out=jax.tree.map(jnp.zeros_like, params["decoder"]["out"])))
    np.testing.assert_array_equal(_apply(model, zeroed, data["lrms"], data["pan"], data["lms"]), data["lms"])


def test_tiny_overfit_with_finite_gradients(model_params: tuple[FeINFN, dict], data: dict[str, jax.Array]) -> None:
    model, params = model_params
    params = dict(params, decoder=dict(params["decoder"], out=jax.tree.map(jnp.zeros_like, params["decoder"]["out"])))
    final, finite, trained = overfit(model, params, data)  # from the bicubic base (zero_out)
    bicubic = float(jnp.mean(jnp.abs(data["lms"] - data["gt"])))
    assert bool(finite)
    assert float(final) < 0.5 * bicubic, (float(final), bicubic)
    for path in (("decoder", "omega_0"), ("decoder", "s0_1"), ("frequency_iff", "phase"), ("frequency_iff", "amplitude"), ("spatial_iff",), ("spectral_encoder",)):
        a, b = (functools.reduce(lambda t, k: t[k], path, p) for p in (trained, params))
        assert min(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b))) > 0, path


def test_registry_and_config_errors() -> None:
    cfg = registry.default_config("feinfn")
    assert cfg.omega0 == 30.0 and cfg.s0 == 10.0 and isinstance(registry.build_model(cfg), FeINFN)
    for key, value in (("fft_norm", "none"), ("q_init", "xavier"), ("decoder_layers", 0)):
        bad = registry.default_config("feinfn")
        bad[key] = value
        with pytest.raises(InputError, match=key):
            build_feinfn(bad)

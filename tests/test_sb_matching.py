"""Schrödinger-bridge matching: closed forms against Brownian-bridge constructions, the loss
against a NumPy transcription with the same keys, vmapped samples against separate calls, an
oracle sampler on a 1-D Gaussian, deterministic evaluation, and a tiny overfit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.generative import sb_matching as sb
from pansharp_jax.models import registry

V = 0.01  # the tests' bridge variance, given explicitly (not the model's default)


def frac_ref(t: np.ndarray, shape: str) -> np.ndarray:
    """F(t) = int_0^t beta / int_0^1 beta by numerical integration of the beta shape."""
    grid = np.linspace(0.0, 1.0, 200_001)
    beta = np.minimum(grid, 1.0 - grid) if shape == "symmetric" else np.ones_like(grid)
    cum = np.concatenate([[0.0], np.cumsum((beta[1:] + beta[:-1]) / 2 * np.diff(grid))])
    return np.interp(t, grid, cum / cum[-1])


@pytest.mark.parametrize("shape", sb.SHAPES)
def test_schedule_is_the_integral_of_beta(shape: str) -> None:
    t = np.linspace(0.0, 1.0, 41)
    np.testing.assert_allclose(np.asarray(sb.Bridge(V, shape).frac(t)), frac_ref(t, shape), atol=1e-6)


@pytest.mark.parametrize("shape", sb.SHAPES)
def test_bridge_marginal_matches_a_pinned_brownian_motion(shape: str) -> None:
    """Exact endpoints (lms at t = 1, hrms at t = 0, for any noise), and in between the law of
    x0 + W(s2(t)) pinned to x1 at t = 1 (W a Brownian motion with clock s2 = V F)."""
    bridge = sb.Bridge(V, shape)
    rng = np.random.default_rng(0)
    x0, x1 = rng.uniform(size=(3, 4, 4, 2)).astype(np.float32), rng.uniform(size=(3, 4, 4, 2)).astype(np.float32)
    z = rng.standard_normal(x0.shape).astype(np.float32)
    for t, want in ((0.0, x0), (1.0, x1)):
        mean, std = sb.marginal(bridge, x0, x1, jnp.full((3,), t))
        np.testing.assert_array_equal(np.asarray(mean + std * z), want)
    # pinned Brownian motion: B_t = x0 + W(s_t) - (s_t / V) (W(V) - (x1 - x0)), W(V) = W(s_t) + indep.
    n, a, b = 200_000, 0.3, 0.9
    for t in (0.2, 0.5, 0.7):
        s_t = V * frac_ref(np.array(t), shape)
        w_t = rng.standard_normal(n) * np.sqrt(s_t)
        w_1 = w_t + rng.standard_normal(n) * np.sqrt(V - s_t)
        pinned = a + w_t - (s_t / V) * (w_1 - (b - a))
        mean, std = sb.marginal(bridge, jnp.full((1, 1), a), jnp.full((1, 1), b), jnp.full((1,), t))
        assert abs(float(mean[0, 0]) - pinned.mean()) < 4 * pinned.std() / np.sqrt(n)
        assert float(std[0, 0]) ** 2 == pytest.approx(pinned.var(), rel=0.01)


def test_posterior_is_gaussian_conditioning_of_the_reference_process() -> None:
    bridge = sb.Bridge(V, "symmetric")
    x0, x_t, t, s = 0.2, 0.65, 0.8, 0.35
    s_s, s_t = V * frac_ref(np.array(s), "symmetric"), V * frac_ref(np.array(t), "symmetric")
    cov = np.array([[s_s, s_s], [s_s, s_t]])  # (X_s, X_t) - x0 under the reference: Brownian with clock s2
    mean_ref = x0 + cov[0, 1] / cov[1, 1] * (x_t - x0)
    var_ref = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]
    mean, std = sb.posterior(bridge, jnp.full((1, 1), x0), jnp.full((1, 1), x_t), t, s)
    assert float(mean[0, 0]) == pytest.approx(mean_ref, rel=1e-5)
    assert float(std) ** 2 == pytest.approx(var_ref, rel=1e-4)
    _, std0 = sb.posterior(bridge, jnp.zeros((1, 1)), jnp.ones((1, 1)), 0.25, 0.0)
    assert float(std0) == 0.0  # the last step adds no noise


def random_params(model: sb.SBM, *inputs: jax.Array, seed: int = 0) -> dict:
    """Parameters of ``model``'s layout drawn in NumPy (N(0, 0.2^2)): no init to compile."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), *inputs)["params"]
    r = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda s: jnp.asarray(0.2 * r.standard_normal(s.shape), s.dtype), shapes)


def tiny_model(bands: int = 4, **kw: object) -> sb.SBM:
    cfg = registry.default_config("sbm")
    cfg.update(dict(bands=bands, base=8, mults=(1, 2), eval_steps=2, eval_samples=2, bridge_var=V, **kw))
    return registry.build_model(cfg)


@pytest.fixture(scope="module")
def tiny() -> tuple[sb.SBM, dict[str, jax.Array], object]:
    model = tiny_model()
    r = np.random.default_rng(3)
    lms = r.uniform(size=(2, 16, 16, 4)).astype(np.float32)
    batch = {"lms": lms, "lrms": lms[:, ::4, ::4], "pan": r.uniform(size=(2, 16, 16, 1)).astype(np.float32),
             "gt": np.clip(lms + 0.05 * r.standard_normal(lms.shape), 0, 1).astype(np.float32)}  # fmt: skip
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    params = random_params(model, batch["lrms"], batch["pan"], batch["lms"])
    return model, batch, params


@pytest.mark.parametrize("loss,x1_noise,shape", [("l2", 0.0, "symmetric"), ("l1", 0.02, "constant")])
def test_loss_equals_a_numpy_transcription_with_the_same_keys(tiny, loss: str, x1_noise: float, shape: str) -> None:  # noqa: ANN001
    model0, batch, params = tiny
    model = model0.clone(loss=loss, x1_noise=x1_noise, schedule=shape)
    rng = jax.random.PRNGKey(11)
    value, aux = jax.jit(lambda b, k: model.apply({"params": params}, b, k, method="training_loss"))(batch, rng)
    # the same draws, then the formula in NumPy
    k_t, k_z, k_1 = jax.random.split(rng, 3)
    gt, lms, pan = (np.asarray(batch[k], np.float64) for k in ("gt", "lms", "pan"))
    t = np.asarray(jax.random.uniform(k_t, (2,)), np.float64)
    z = np.asarray(jax.random.normal(k_z, gt.shape), np.float64)
    x1 = lms + x1_noise * np.asarray(jax.random.normal(k_1, gt.shape), np.float64)
    f = frac_ref(t, shape)[:, None, None, None]
    x_t = (1 - f) * gt + f * x1 + np.sqrt(V * f * (1 - f)) * z
    cond = np.concatenate([lms, pan], -1)
    net = jax.jit(lambda *a: model.unet().apply({"params": params["net"]}, *a))
    out = net(*(jnp.asarray(a, jnp.float32) for a in (x_t, 1000.0 * t, cond)))
    err = np.asarray(out, np.float64) + lms - gt
    want = np.mean(err**2) if loss == "l2" else np.mean(np.abs(err))
    assert float(value) == pytest.approx(want, rel=2e-4)
    assert float(aux["lms_mse"]) == pytest.approx(np.mean((lms - gt) ** 2), rel=1e-5)


def test_vmapped_samples_equal_separate_calls(tiny) -> None:  # noqa: ANN001
    model, batch, params = tiny
    x0_fn = sb.unet_x0_fn(model.unet())
    cond = jnp.concatenate([batch["lms"], batch["pan"]], -1)
    rng, bridge = jax.random.PRNGKey(5), model.bridge()
    many = jax.jit(lambda k: sb.sample_many(x0_fn, params["net"], cond, batch["lms"], k, bridge, samples=3, steps=3, return_samples=True))
    mean, std, draws = many(rng)
    one = jax.jit(lambda k: sb.bridge_sample(x0_fn, params["net"], cond, batch["lms"], k, bridge, steps=3))
    single = np.stack([np.asarray(one(k)) for k in jax.random.split(rng, 3)])
    np.testing.assert_allclose(np.asarray(draws), single, atol=2e-5)
    np.testing.assert_allclose(np.asarray(mean), single.mean(0), atol=2e-5)
    np.testing.assert_allclose(np.asarray(std), single.std(0), atol=2e-5)
    assert float(std.min()) >= 0 and float(std.max()) > 0


@pytest.mark.parametrize("shape", sb.SHAPES)
def test_sampler_with_an_oracle_recovers_the_endpoint_law(shape: str) -> None:
    """X_1 = c fixed, X_0 ~ N(m, s2): with the exact E[X_0 | X_t] the SDE sampler's X_0 has
    mean m and variance s2 (within 5%); the ODE sampler returns m (deterministic)."""
    m, s2, c = 0.5, 0.04, 0.1
    bridge = sb.Bridge(V, shape)

    def oracle(params: object, x_t: jax.Array, t: jax.Array, cond: object) -> jax.Array:
        f = jnp.asarray(frac_ref(np.linspace(0, 1, 1001), shape), jnp.float32)[jnp.round(t * 1000).astype(jnp.int32)][:, None]
        mu = (1 - f) * m + f * c
        var = (1 - f) ** 2 * s2 + V * f * (1 - f)
        gain = jnp.where(var > 0, (1 - f) * s2 / jnp.where(var > 0, var, 1.0), 0.0)
        return m + gain * (x_t - mu)

    x1 = jnp.full((40_000, 1), c, jnp.float32)
    x0 = np.asarray(jax.jit(lambda k: sb.bridge_sample(oracle, None, None, x1, k, bridge, steps=200))(jax.random.PRNGKey(0)))
    assert x0.mean() == pytest.approx(m, rel=0.05)
    assert x0.var() == pytest.approx(s2, rel=0.05)
    for steps in (1, 4):
        ode = np.asarray(sb.bridge_sample(oracle, None, None, x1[:4], jax.random.PRNGKey(1), bridge, steps=steps, sampler="ode"))
        np.testing.assert_allclose(ode, m, atol=1e-6)


def test_eval_output_and_fuse_are_deterministic(tiny) -> None:  # noqa: ANN001
    model, batch, params = tiny
    key = jax.random.PRNGKey(20_240_601)
    ev = jax.jit(lambda k: model.apply({"params": params}, batch, k, method="eval_output"))
    a, b = ev(key), ev(key)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fuse = jax.jit(lambda *x: model.apply({"params": params}, *x))
    f1, f2 = fuse(batch["lrms"], batch["pan"], batch["lms"]), fuse(batch["lrms"], batch["pan"], batch["lms"])
    np.testing.assert_array_equal(np.asarray(f1), np.asarray(f2))
    assert f1.shape == batch["lms"].shape
    np.testing.assert_array_equal(np.asarray(f1), np.asarray(ev(jax.random.PRNGKey(sb.FUSE_KEY))))
    other = ev(jax.random.PRNGKey(1))
    assert not np.allclose(np.asarray(a), np.asarray(other))  # the key matters (SDE noise)


def test_tiny_overfit_decreases_the_loss(tiny) -> None:  # noqa: ANN001
    model, batch, params = tiny
    tx = optax.adam(3e-3)

    @jax.jit
    def step(p: object, o: object, k: jax.Array, scale: float) -> tuple[object, object, jax.Array]:
        value, g = jax.value_and_grad(lambda q: model.apply({"params": q}, batch, k, method="training_loss")[0])(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, jax.tree_util.tree_map(lambda x: scale * x, u)), o, value

    def held(p: object) -> float:  # the loss at fixed keys, without updating (scale 0)
        return float(np.mean([step(p, tx.init(p), k, 0.0)[2] for k in jax.random.split(jax.random.PRNGKey(7), 4)]))

    p, o = params, tx.init(params)
    before = held(p)
    for i in range(30):
        p, o, _ = step(p, o, jax.random.fold_in(jax.random.PRNGKey(8), i), 1.0)
    assert held(p) < 0.5 * before


def test_bad_choices_are_input_errors() -> None:
    for field, value in (("schedule", "cosine"), ("sampler", "ddim"), ("predict", "eps"), ("loss", "huber")):
        cfg = registry.default_config("sbm")
        cfg[field] = value
        with pytest.raises(InputError, match=value):
            registry.build_model(cfg)
    with pytest.raises(InputError, match="bridge_var"):
        sb.Bridge(0.0)
    with pytest.raises(InputError, match="steps"):
        sb.time_grid(0)

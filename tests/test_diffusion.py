"""The diffusion core (:mod:`pansharp_jax.generative.diffusion`) and its UNet (:mod:`pansharp_jax.nn.unet`).

References are written here independently of the code: schedules in NumPy float64 from their
closed forms, the exact denoiser of Gaussian data (so the samplers' output distribution is known),
the forward process and loss targets from the equations, and the documented key scheme.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.generative import diffusion as d
from pansharp_jax.nn.unet import UNet, timestep_embedding, unet_apply_fn

T = 1000


# ----------------------------------------------------------------------------- schedules
def test_linear_alpha_bar_is_cumulative_product() -> None:
    betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    ref = np.cumprod(1.0 - betas)
    sch = d.linear_schedule(T)
    assert sch.T == T and sch.alpha_bar.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(sch.betas), betas, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(sch.alpha_bar), ref, rtol=2e-6, atol=0)


def test_cosine_alpha_bar_is_closed_form() -> None:
    s = 0.008
    f = np.cos(((np.arange(T + 1) / T) + s) / (1 + s) * np.pi / 2) ** 2
    ref = f[1:] / f[0]  # alpha_bar after step t (index t - 1), before any clipping
    sch = d.cosine_schedule(T)
    ab = np.asarray(sch.alpha_bar, np.float64)
    # unclipped steps: exactly the closed form
    np.testing.assert_allclose(ab[:-1], ref[:-1], rtol=2e-5, atol=1e-9)
    # f(T) = 0, so the last beta is 1 and is clipped to 0.999
    assert float(sch.betas[-1]) == pytest.approx(0.999, rel=1e-6)
    assert ab[-1] == pytest.approx(ref[-2] * (1 - 0.999), rel=1e-4)
    assert np.all(np.asarray(sch.betas) <= 0.999 + 1e-7)


def test_timesteps_and_respacing() -> None:
    taus = d.timesteps(T, 10)
    assert taus[0] == 0 and taus[-1] == T - 1 and len(taus) == 10 and np.all(np.diff(taus) > 0)
    np.testing.assert_array_equal(d.timesteps(T, T), np.arange(T))
    np.testing.assert_array_equal(d.timesteps(T, 1), [T - 1])
    sch = d.linear_schedule(T)
    taus = d.timesteps(T, 7)
    b = np.asarray(d.respaced_betas(sch, taus), np.float64)
    # the respaced chain keeps the marginals alpha_bar[tau_i]
    np.testing.assert_allclose(np.cumprod(1 - b), np.asarray(sch.alpha_bar)[taus], rtol=1e-5)
    with pytest.raises(InputError):
        d.timesteps(T, T + 1)
    with pytest.raises(InputError):
        d.make_schedule("quadratic")


# ----------------------------------------------------------------------------- parameterisations
def test_conversions_are_mutual_inverses() -> None:
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(5, 3)).astype(np.float32)
    eps = rng.normal(size=(5, 3)).astype(np.float32)
    ab = rng.uniform(0.05, 0.95, size=5).astype(np.float32)
    a, b = np.sqrt(ab)[:, None], np.sqrt(1 - ab)[:, None]
    x_t = a * x0 + b * eps
    v_ref = a * eps - b * x0
    np.testing.assert_allclose(d.v_from_x0_eps(x0, eps, ab), v_ref, atol=1e-6)
    np.testing.assert_allclose(d.x0_from_eps(x_t, eps, ab), x0, atol=1e-5)
    np.testing.assert_allclose(d.eps_from_x0(x_t, x0, ab), eps, atol=1e-5)
    np.testing.assert_allclose(d.x0_from_v(x_t, v_ref, ab), x0, atol=1e-5)
    np.testing.assert_allclose(d.eps_from_v(x_t, v_ref, ab), eps, atol=1e-5)
    for p, pred in (("eps", eps), ("x0", x0), ("v", v_ref)):
        got_x0, got_eps = d.to_x0_eps(jnp.asarray(pred), jnp.asarray(x_t), ab, p)
        np.testing.assert_allclose(got_x0, x0, atol=1e-5)
        np.testing.assert_allclose(got_eps, eps, atol=1e-5)
        np.testing.assert_allclose(d.training_target(x0, eps, ab, p), pred, atol=1e-6)


def test_q_sample_and_loss_targets() -> None:
    sch = d.cosine_schedule(T)
    ab_np = np.asarray(sch.alpha_bar, np.float64)
    rng = jax.random.PRNGKey(3)
    x0 = np.random.default_rng(1).normal(size=(4, 2, 2, 3)).astype(np.float32)
    # the documented key scheme
    k_t, k_n = jax.random.split(rng)
    t = np.asarray(jax.random.randint(k_t, (4,), 0, T, dtype=jnp.int32))
    noise = np.asarray(jax.random.normal(k_n, x0.shape, jnp.float32), np.float64)
    a, b = np.sqrt(ab_np[t])[:, None, None, None], np.sqrt(1 - ab_np[t])[:, None, None, None]
    x_t = a * x0 + b * noise
    np.testing.assert_allclose(d.q_sample(sch, x0, jnp.asarray(t), jnp.asarray(noise, jnp.float32)), x_t, atol=1e-5)
    targets = {"eps": noise, "x0": x0, "v": a * noise - b * x0}
    seen = {}

    def zero_model(params, x, tt, cond):  # noqa: ANN001, ANN202
        seen["x"], seen["t"] = x, tt
        return jnp.zeros_like(x)

    for p, target in targets.items():
        got = float(d.diffusion_loss(zero_model, None, jnp.asarray(x0), None, rng, sch, p, "l2"))
        assert got == pytest.approx(np.mean(target**2), rel=1e-4), p
        got1 = float(d.diffusion_loss(zero_model, None, jnp.asarray(x0), None, rng, sch, p, "l1"))
        assert got1 == pytest.approx(np.mean(np.abs(target)), rel=1e-4), p
    np.testing.assert_array_equal(np.asarray(seen["t"]), t)
    np.testing.assert_allclose(np.asarray(seen["x"]), x_t, atol=1e-5)
    with pytest.raises(InputError):
        d.diffusion_loss(zero_model, None, jnp.asarray(x0), None, rng, sch, "score")


# ----------------------------------------------------------------------------- Gaussian toy
MU, S2 = 1.5, 0.25  # x0 ~ N(MU, S2)


def _gauss_model(parameterisation: str):  # noqa: ANN202
    """The exact (posterior-mean) predictor for x0 ~ N(mu, s2), mu/s2 per element from ``cond``.

    x_t = a x0 + b eps is Gaussian with variance V = a^2 s2 + b^2, so
    E[eps | x_t] = b / V (x_t - a mu), E[x0 | x_t] = mu + a s2 / V (x_t - a mu), and E[v | x_t]
    = a E[eps | x_t] - b E[x0 | x_t]. ``params`` = alpha_bar (T,) in float64 -> float32.
    """

    def apply_fn(ab_table, x, t, cond):  # noqa: ANN001, ANN202
        mu, s2 = cond
        ab = ab_table[t][:, None]
        a, b = jnp.sqrt(ab), jnp.sqrt(1 - ab)
        var = a**2 * s2 + b**2
        e_eps = b / var * (x - a * mu)
        e_x0 = mu + a * s2 / var * (x - a * mu)
        return {"eps": e_eps, "x0": e_x0, "v": a * e_eps - b * e_x0}[parameterisation]

    return apply_fn


_MODELS = {p: _gauss_model(p) for p in d.PARAMETERISATIONS}  # one object each: static under jit
_SCHEDULES = {
    "cosine": np.asarray(d.cosine_schedule(T).alpha_bar),
    "linear": np.cumprod(1 - np.linspace(1e-4, 0.02, T)).astype(np.float32),
}


@pytest.mark.parametrize(
    ("schedule", "sampler", "steps", "eta", "param"),
    [
        ("cosine", "ddpm", T, 0.0, "eps"),  # plain DDPM
        ("cosine", "ddpm", 500, 0.0, "v"),  # respaced DDPM
        ("linear", "ddim", 250, 0.0, "x0"),  # deterministic DDIM
        ("cosine", "ddim", 500, 1.0, "eps"),  # stochastic DDIM
    ],
)
def test_sampler_recovers_gaussian(schedule: str, sampler: str, steps: int, eta: float, param: str) -> None:
    n = 20_000
    sch = d.make_schedule(schedule, T)
    cond = (jnp.full((n, 1), MU), jnp.full((n, 1), S2))
    x = np.asarray(d.sample(_MODELS[param], jnp.asarray(_SCHEDULES[schedule]), cond, jax.random.PRNGKey(7), sch,
                            shape=(n, 1), steps=steps, sampler=sampler, eta=eta, parameterisation=param), np.float64)  # fmt: skip
    assert abs(x.mean() - MU) < 0.05 * MU, x.mean()
    assert abs(x.var() - S2) < 0.05 * S2, x.var()


def test_conditional_gaussian_posterior_with_sample_many() -> None:
    """y = x0 + N(0, tau2), x0 ~ N(m0, s0): x0 | y ~ N(s_post (m0/s0 + y/tau2), s_post), s_post = 1/(1/s0 + 1/tau2)."""
    m0, s0, tau2 = 1.0, 1.0, 0.25
    y = np.array([1.0, 2.0, -1.5])
    s_post = 1.0 / (1.0 / s0 + 1.0 / tau2)
    m_post = s_post * (m0 / s0 + y / tau2)  # [1.0, 1.8, -1.0]
    cond = (jnp.asarray(m_post[:, None], jnp.float32), jnp.full((3, 1), s_post, jnp.float32))
    sch = d.cosine_schedule(T)
    mean, std, draws = d.sample_many(_MODELS["v"], jnp.asarray(_SCHEDULES["cosine"]), cond, jax.random.PRNGKey(11), sch,
                                     shape=(3, 1), samples=7000, steps=T, sampler="ddpm", parameterisation="v",
                                     return_samples=True)  # fmt: skip
    draws = np.asarray(draws, np.float64)[..., 0]  # (S, 3)
    assert draws.shape == (7000, 3)
    np.testing.assert_allclose(np.asarray(mean)[:, 0], draws.mean(0), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(std)[:, 0], draws.std(0), rtol=1e-3)
    assert np.all(np.abs(draws.mean(0) - m_post) < 0.05 * np.abs(m_post)), draws.mean(0)
    pooled = np.mean((draws - m_post) ** 2)
    assert abs(pooled - s_post) < 0.05 * s_post, pooled


# ----------------------------------------------------------------------------- vmap / determinism
@pytest.fixture(scope="module")
def unet() -> tuple[UNet, object, object]:
    """One tiny UNet (2 levels, width 8, attention on), 3 bands + a 4-channel condition.

    Parameter shapes do not depend on H, W, so the 8x8 init serves 16x16 inputs too. An 'rbg'
    key: XLA compiles its initialisers ~3x faster than threefry's on the CPU.
    """
    module = UNet(out_channels=3, base=8, mults=(1, 2), groups=4, attention=True)
    x = jnp.zeros((2, 8, 8, 3))
    key = jax.random.key(0, impl="rbg")
    params = jax.jit(module.init)(key, x, jnp.zeros((2,), jnp.int32), jnp.zeros((2, 8, 8, 4)))["params"]
    return module, unet_apply_fn(module), params


def test_vmapped_samples_equal_separate_calls(unet: tuple[UNet, object, object]) -> None:
    _, apply_fn, params = unet
    cond = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 8, 4))
    sch, rng, S = d.cosine_schedule(50), jax.random.PRNGKey(5), 3
    kw = dict(shape=(2, 8, 8, 3), steps=4, sampler="ddpm", parameterisation="x0")
    mean, std, draws = d.sample_many(apply_fn, params, cond, rng, sch, samples=S, return_samples=True, **kw)
    keys = jax.random.split(rng, S)
    separate = np.stack([np.asarray(d.sample(apply_fn, params, cond, keys[s], sch, **kw)) for s in range(S)])
    # float tolerance: a vmapped conv sums in another order than the single-sample one
    np.testing.assert_allclose(np.asarray(draws), separate, atol=1e-4)
    assert np.abs(separate[0] - separate[1]).max() > 0.1  # the samples differ
    np.testing.assert_allclose(mean, separate.mean(0), atol=1e-4)
    np.testing.assert_allclose(std, separate.std(0), atol=1e-4)


def test_ddim_eta0_is_deterministic_given_x_T(unet: tuple[UNet, object, object]) -> None:
    _, apply_fn, params = unet
    cond = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 8, 4))
    sch = d.linear_schedule(50)
    x_T = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 3))
    k1, k2 = jax.random.PRNGKey(10), jax.random.PRNGKey(20)
    run = jax.jit(d.ddim_sample, static_argnames=("apply_fn", "steps"))  # eta traced: one compile
    a = run(apply_fn, params, cond, x_T, k1, sch, steps=5, eta=0.0)
    b = run(apply_fn, params, cond, x_T, k2, sch, steps=5, eta=0.0)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # with eta = 1 the step keys matter, and DDIM(eta=1) is DDPM with the posterior variance
    c = run(apply_fn, params, cond, x_T, k1, sch, steps=5, eta=1.0)
    e = run(apply_fn, params, cond, x_T, k2, sch, steps=5, eta=1.0)
    assert np.abs(np.asarray(c) - np.asarray(e)).max() > 1e-3
    p = d.ddpm_sample(apply_fn, params, cond, x_T, k1, sch, steps=5)
    np.testing.assert_allclose(np.asarray(p), np.asarray(c), rtol=1e-4, atol=1e-4)


def test_pansharp_residual_convention() -> None:
    lms = jax.random.uniform(jax.random.PRNGKey(0), (1, 4, 4, 3))
    pan = jax.random.uniform(jax.random.PRNGKey(1), (1, 4, 4, 1))
    gt = lms + 0.1
    np.testing.assert_allclose(d.pansharp_x0(gt, lms), np.full(gt.shape, 0.1), atol=1e-6)
    np.testing.assert_allclose(d.pansharp_x0(gt, lms, "image"), gt)
    np.testing.assert_allclose(d.pansharp_condition(lms, pan), np.concatenate([lms, pan], -1))

    def zero_x0(params, x, t, cond):  # noqa: ANN001, ANN202 - predicts x0 = 0 whatever the input
        return jnp.zeros_like(x)

    sch = d.cosine_schedule(20)
    for target, expect in (("residual", np.asarray(lms)), ("image", np.zeros(lms.shape))):
        mean, std = d.sample_hrms(zero_x0, None, lms, pan, jax.random.PRNGKey(0), sch, samples=2, steps=3,
                                  target=target, parameterisation="x0")  # fmt: skip
        np.testing.assert_allclose(mean, expect, atol=1e-6)
        np.testing.assert_allclose(std, 0.0, atol=1e-6)
    with pytest.raises(InputError):
        d.pansharp_x0(gt, lms, "difference")


# ----------------------------------------------------------------------------- UNet
def test_timestep_embedding_formula() -> None:
    t = np.array([0.0, 3.0, 250.0])
    dim = 6
    freqs = 10000.0 ** (-np.arange(3) / 3)
    ref = np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], axis=1)
    np.testing.assert_allclose(timestep_embedding(jnp.asarray(t), dim), ref, atol=1e-4)


def test_unet_shapes_and_inputs(unet: tuple[UNet, object, object]) -> None:
    module, apply_fn, params = unet
    assert "AttentionBlock_0" in params
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
    cond = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 16, 4))
    t = jnp.array([3, 900])
    fwd = jax.jit(apply_fn)
    out = fwd(params, x, t, cond)
    assert out.shape == x.shape
    # time and condition both reach the output
    assert np.abs(np.asarray(out - fwd(params, x, t + 100, cond))).max() > 1e-4
    assert np.abs(np.asarray(out - fwd(params, x, t, cond * 0))).max() > 1e-4
    # three levels, no attention, no condition: shapes only (no compile)
    deep = UNet(out_channels=8, base=8, mults=(1, 2, 2), groups=4)
    xs = jax.ShapeDtypeStruct((1, 32, 32, 8), jnp.float32)
    init = jax.eval_shape(lambda k, a: deep.init(k, a, jnp.zeros((1,)), None), jax.random.PRNGKey(0), xs)
    assert jax.eval_shape(lambda v, a: deep.apply(v, a, jnp.zeros((1,)), None), init, xs).shape == xs.shape
    with pytest.raises(InputError, match="multiple of 2"):
        module.init(jax.random.PRNGKey(2), jnp.zeros((1, 9, 9, 3)), jnp.zeros(1), None)


def test_tiny_unet_gradients_and_overfit(unet: tuple[UNet, object, object]) -> None:
    """Finite, non-zero gradients; 100 Adam steps on one 16x16 batch cut the loss by > 10x."""
    _, apply_fn, params = unet
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    lms = jax.random.uniform(k[0], (2, 16, 16, 3))
    batch = {"lms": lms, "pan": jnp.mean(lms, -1, keepdims=True),
             "gt": lms + 0.1 * jax.random.normal(k[1], lms.shape)}  # fmt: skip
    sch = d.cosine_schedule(100)
    tx = optax.adam(3e-3)
    rng = jax.random.PRNGKey(4)  # fixed t and noise: a plain regression of the x0 residual

    def loss(p):  # noqa: ANN001, ANN202
        return d.pansharp_loss(apply_fn, p, batch, rng, sch, parameterisation="x0")

    @jax.jit
    def step(p, s):  # noqa: ANN001, ANN202
        value, g = jax.value_and_grad(loss)(p)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s, value, g

    state = tx.init(params)
    params, state, first, grads = step(params, state)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert np.mean([float(jnp.abs(g).max()) > 0 for g in leaves]) > 0.9  # nearly every parameter learns
    for _ in range(100):
        params, state, value, _ = step(params, state)
    final = float(jax.jit(loss)(params))
    assert final < float(first) / 10, (float(first), final)

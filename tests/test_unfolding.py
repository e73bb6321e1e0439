"""Deep unfolding: the scanned stages equal a Python loop, the operators match the Wald protocol."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.data import wald
from pansharp_jax.models.unfolding import Stage, blur, build_unfolding, down, unfolding_config, up_adjoint

TINY_MAE = dict(patch=4, embed_dim=16, depth=1, heads=2, decoder_dim=8, decoder_depth=1, decoder_heads=2)


def _inputs(bands: int = 4, h: int = 8):
    k = jax.random.split(jax.random.key(0), 2)
    lrms = jax.random.uniform(k[0], (2, h, h, bands))
    pan = jax.random.uniform(k[1], (2, 4 * h, 4 * h, 1))
    return lrms, pan, jnp.asarray(wald.interp23tap(lrms, 4), jnp.float32)


def _model(prior: bool, stages: int = 3, scan_unroll: int = 0):
    cfg = unfolding_config(4, "QB")
    cfg.mae.update(TINY_MAE)
    cfg.stages, cfg.prior, cfg.scan_unroll = stages, prior, scan_unroll
    return build_unfolding(cfg)


@pytest.mark.parametrize("prior,scan_unroll", [(True, 1), (False, 1), (True, 0)])
def test_scanned_stages_equal_a_python_loop_over_the_same_stage_params(prior: bool, scan_unroll: int) -> None:
    """Rolled (unroll 1) and the CPU's unrolled scan (auto) both equal a Python loop."""
    m = _model(prior, scan_unroll=scan_unroll)
    lrms, pan, lms = _inputs()
    v = jax.jit(lambda: m.init(jax.random.key(1), lrms, pan, lms))()
    p = v["params"]
    # perturb every stage differently so a loop that reused one stage's params would differ
    p = jax.tree.map(lambda a: a, dict(p))
    p["stages"] = jax.tree.map(lambda a: a + 0.01 * jnp.arange(a.shape[0]).reshape((-1,) + (1,) * (a.ndim - 1)), p["stages"])
    stages = jax.jit(lambda p: m.apply({"params": p}, lrms, pan, lms, return_stages=True))(p)
    assert stages.shape == (2, 3, 32, 32, 4)
    assert ("prior" in p) == prior
    shared = {"kernel": p["blur"], "kernel_t": p["blur_t"], "response": p["response"], "response_t": p["response_t"],
              "lrms": lrms, "pan": pan}  # fmt: skip
    if prior:
        shared["prior"] = p["prior"]
    x = lms
    for k in range(3):
        pk = jax.tree.map(lambda a: a[k], p["stages"])
        x, _ = Stage(4, 4, 32, prior, m.mae_fields if prior else ()).apply({"params": pk}, x, shared)
        np.testing.assert_allclose(np.asarray(stages[:, k]), np.asarray(x), rtol=1e-5, atol=1e-5)
    final = jax.jit(lambda p: m.apply({"params": p}, lrms, pan, lms))(p)
    np.testing.assert_allclose(np.asarray(final), np.asarray(x), rtol=1e-5, atol=1e-5)


def test_down_with_the_full_mtf_kernel_is_the_wald_protocol() -> None:
    x = jax.random.uniform(jax.random.key(3), (1, 64, 64, 4), dtype=jnp.float32)
    gains = (0.34, 0.32, 0.30, 0.22)
    kern = jnp.asarray(wald.mtf_kernels(gains, 4, 41), jnp.float32)
    ours = down(x, kern, 4)
    ref = wald.decimate(wald.mtf_filter(x.astype(jnp.float64), gains, 4), 4)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=2e-6)


def test_up_adjoint_is_the_adjoint_of_down_away_from_borders() -> None:
    kern = jax.random.uniform(jax.random.key(4), (5, 5, 2))
    x = jnp.zeros((1, 32, 32, 2)).at[:, 8:24, 8:24].set(jax.random.normal(jax.random.key(5), (1, 16, 16, 2)))
    y = jnp.zeros((1, 8, 8, 2)).at[:, 2:6, 2:6].set(jax.random.normal(jax.random.key(6), (1, 4, 4, 2)))
    lhs = jnp.sum(down(x, kern, 4) * y)
    rhs = jnp.sum(x * up_adjoint(y, kern, 4))
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-5)
    assert blur(x, kern).shape == x.shape


def test_gradients_reach_every_stage_and_the_operators() -> None:
    m = _model(False, stages=2)
    lrms, pan, lms = _inputs()
    v = jax.jit(lambda: m.init(jax.random.key(1), lrms, pan, lms))()
    g = jax.jit(jax.grad(lambda p: jnp.mean(m.apply({"params": p}, lrms, pan, lms) ** 2)))(v["params"])
    for name in ("blur", "blur_t", "response", "response_t"):
        assert float(jnp.abs(g[name]).max()) > 0, name
    assert np.all(np.abs(np.asarray(g["stages"]["eta"])) > 0)
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(g))


def test_scan_unroll_auto_unrolls_on_the_cpu_only() -> None:
    from pansharp_jax.errors import InputError
    from pansharp_jax.nn.unroll import resolve_unroll

    assert resolve_unroll(0, 4, "cpu") == 4 and resolve_unroll(0, 4, "gpu") == 1 and resolve_unroll(0, 4, "tpu") == 1
    assert resolve_unroll(2, 4, "cpu") == 2 and resolve_unroll(9, 4, "gpu") == 4
    with pytest.raises(InputError, match="scan_unroll"):
        resolve_unroll(-1, 4)

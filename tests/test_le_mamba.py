"""LE-Mamba: shapes on any size with one set of params, the MHIF guide, state sharing, overfitting, sizes."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.models import registry
from pansharp_jax.models.le_mamba import SS2D, build_le_mamba, count_params


def small_config(**overrides):
    """A narrow one-level LE-Mamba with every feature on: guide, windows, local + global scans, sharing.

    Blocks: enc0_0, enc0_1 (state of enc0_0), mid_0 (at 1/2 size), dec0_0 and dec0_1 (state of
    mid_0 plus the encoder skip state, projected in dec0_0, added as is in dec0_1). 3 x 3 convs
    and the sequential scan keep XLA's CPU compile times short.
    """
    cfg = registry.default_config("le_mamba")
    cfg.update(
        dict(
            size="tiny", bands=4, width=8, levels=1, enc_blocks=(2,), dec_blocks=(2,), window=4, d_state=8,
            local_d_state=4, conv=3, local_conv=3, drop_path=0.0, scan_method="sequential",
        )
    )
    cfg.update(overrides)
    return cfg


def inputs(key, b, h, w, bands=4, guide=1, ratio=4):
    k1, k2 = jax.random.split(key)
    lms = jax.random.uniform(k1, (b, h, w, bands))
    pan = jax.random.uniform(k2, (b, h, w, guide))
    lrms = lms[:, ::ratio, ::ratio]
    return lrms, pan, lms


# XLA's CPU compile time dominates these tests; its LLVM optimisation level 0 halves it
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def init_params(module, *args, seed=1):
    """Params without running the network; an RBG key: XLA compiles threefry slowly on CPU."""
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
    return fast_jit(module.lazy_init)(jax.random.key(seed, impl="unsafe_rbg"), *shapes)["params"]


@pytest.fixture(scope="module")
def model():
    module = registry.build_model(small_config())
    lrms, pan, lms = inputs(jax.random.key(0), 1, 16, 16)
    params = init_params(module, lrms, pan, lms)
    apply = fast_jit(lambda p, a, b, c: module.apply({"params": p}, a, b, c))
    return module, params, apply


def test_same_params_on_two_sizes_including_padding(model) -> None:
    module, params, apply = model
    assert module.multiple == 4  # 1 level (x2) and windows of 4 at full size
    for b, h, w in ((1, 16, 16), (2, 18, 26)):  # 18 x 26 is padded to 20 x 28 and cropped back
        lrms, pan, lms = inputs(jax.random.key(h), b, h, w)
        out = apply(params, lrms, pan, lms)
        assert out.shape == (b, h, w, 4) and out.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(out)))
        assert float(jnp.abs(out - lms).max()) > 1e-4  # the network adds something to lms
    # the presets pad to multiples of 16 (windows of 8 at 1/2 size); the config test runs them
    assert build_le_mamba(registry.default_config("le_mamba")).multiple == 16


def test_guide_with_three_bands_mhif() -> None:
    module = registry.build_model(small_config(bands=31, guide_bands=3))
    lrms, pan, lms = inputs(jax.random.key(0), 1, 16, 16, bands=31, guide=3, ratio=8)
    out, variables = jax.eval_shape(lambda a, b, c: module.init_with_output(jax.random.key(1), a, b, c), lrms, pan, lms)
    assert out.shape == (1, 16, 16, 31)
    assert variables["params"]["enc0_0"]["guide_conv1"]["kernel"].shape == (1, 1, 3, 8)
    assert variables["params"]["intro"]["kernel"].shape == (3, 3, 31, 8)
    with pytest.raises(InputError, match="3-band guide"):
        jax.eval_shape(lambda a, b, c: module.init(jax.random.key(1), a, b, c), lrms, pan[..., :1], lms)


def _strip_sharing(tree):
    """The params of the same model built with ``state_share='none'``."""
    return {
        k: _strip_sharing(v) if isinstance(v, dict) else v
        for k, v in tree.items()
        if not k.startswith(("state_", "skip_proj"))
    }


def _zero_state_of(block):
    """Interceptor: the global SS2D of ``block`` hands on an all-zero final state."""

    def interceptor(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        if isinstance(context.module, SS2D) and context.method_name == "__call__" and block in context.module.path:
            return y[0], jnp.zeros_like(y[1])
        return y

    return interceptor


def test_state_sharing_is_wired_and_used(model) -> None:
    module, params, apply = model
    lrms, pan, lms = inputs(jax.random.key(16), 1, 16, 16)
    # who shares: enc0_1 (from enc0_0) and every decoder block (mid_0's state + the encoder skip state)
    ssm = {k: v["global"]["ssm"] for k, v in params.items() if isinstance(v, dict) and "global" in v}
    assert {k for k, v in ssm.items() if "state_proj" in v} == {"enc0_1", "dec0_0", "dec0_1"}
    d = 2 * 8  # expand 2 x width 8
    assert ssm["enc0_1"]["state_proj"].shape == (4, d, d) and ssm["enc0_1"]["state_gate"].shape == (4, d, 8)
    assert ssm["dec0_0"]["state_proj"].shape == (4, d, d)  # from mid_0 (width 8, expand 2)
    assert ssm["dec0_0"]["skip_proj"].shape == (4, d, d) and "skip_proj" not in ssm["dec0_1"]

    # at initialisation the final states are small (dt ~ 1e-3..1e-1); larger share gates make the
    # effect of sharing stand well above float rounding
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: 20.0 * v if "state_ratio" in jax.tree_util.keystr(p) else v, params
    )
    out = apply(params, lrms, pan, lms)
    # zeroing every state-share gate (the ratio r) changes the output ...
    zeroed = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.zeros_like(v) if "state_ratio" in jax.tree_util.keystr(p) else v, params
    )
    out_zero = apply(zeroed, lrms, pan, lms)
    assert float(jnp.abs(out - out_zero).max()) > 1e-4
    # ... and gives exactly the model without sharing
    no_share = module.clone(state_share="none")
    out_none = fast_jit(lambda p: no_share.apply({"params": p}, lrms, pan, lms))(_strip_sharing(params))
    np.testing.assert_allclose(out_none, out_zero, atol=1e-6)

    # the final state of enc0_0 reaches enc0_1: hand on zeros instead and the output moves
    with nn.intercept_methods(_zero_state_of("enc0_0")):  # (interceptors act while tracing)
        out_cut = fast_jit(lambda p: module.apply({"params": p}, lrms, pan, lms))(params)
    assert float(jnp.abs(out - out_cut).max()) > 1e-4
    # and the state of mid_0 reaches the decoder
    with nn.intercept_methods(_zero_state_of("mid_0")):
        out_cut_mid = fast_jit(lambda p: module.apply({"params": p}, lrms, pan, lms))(params)
    assert float(jnp.abs(out - out_cut_mid).max()) > 1e-4

    # 'h0': the projected, scaled previous state is the next scan's initial state (no gate)
    h0 = module.clone(state_share="h0")
    p_h0 = jax.tree_util.tree_map(lambda v: v, params)
    for v in p_h0.values():
        if isinstance(v, dict) and "global" in v:
            v["global"]["ssm"].pop("state_gate", None)
    out_h0 = fast_jit(lambda p: h0.apply({"params": p}, lrms, pan, lms))(p_h0)
    with nn.intercept_methods(_zero_state_of("enc0_0")):
        out_h0_cut = fast_jit(lambda p: h0.apply({"params": p}, lrms, pan, lms))(p_h0)
    assert float(jnp.abs(out_h0 - out_h0_cut).max()) > 1e-5


def test_memory_budget_path_equals_plain_path(model) -> None:
    module, params, apply = model
    lrms, pan, lms = inputs(jax.random.key(16), 1, 16, 16)
    plain = apply(params, lrms, pan, lms)
    # a tiny budget: the 16 windows are scanned in groups, the global scans run chunked
    small = module.clone(scan_budget=4 * 16 * 16 * 8, chunk=32)
    budgeted = fast_jit(lambda p: small.apply({"params": p}, lrms, pan, lms))(params)
    np.testing.assert_allclose(budgeted, plain, atol=2e-5)


def test_serial_directions_and_remat_are_the_same_function() -> None:
    """The lax.scan over the 4 directions (whole scenes) and block rematerialisation (large
    training crops) compute the same function as the 4 unrolled branches, in reverse mode too."""
    batched = registry.build_model(small_config(scan_directions="batched"))
    lrms, pan, lms = inputs(jax.random.key(17), 2, 16, 12)
    params = init_params(batched, lrms, pan, lms)

    def value_and_grad(module):
        return fast_jit(jax.value_and_grad(lambda p: jnp.sum(module.apply({"params": p}, lrms, pan, lms, train=True) ** 2)))(params)

    v_b, g_b = value_and_grad(batched)
    for variant in (dict(scan_directions="serial"), dict(scan_directions="serial", remat_blocks=True)):
        v, g = value_and_grad(batched.clone(**variant))
        np.testing.assert_allclose(v, v_b, rtol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_b)):  # float32 sums reordered
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(jnp.abs(b).max()) + 1e-7)
    # the 'h0' state sharing and the state each SS2D hands on
    for share in ("h0", "input"):
        block = SS2D(8, 2.0, 3, share_prev=True, state_share=share, scan_method="sequential", scan_directions="batched")
        x = jax.random.normal(jax.random.key(3), (2, 5, 7, 8))
        prev = jax.random.normal(jax.random.key(4), (2, 4, 16, 8))
        p = init_params(block, x, prev)
        y_b, s_b = block.apply({"params": p}, x, prev)
        y_s, s_s = block.clone(scan_directions="serial").apply({"params": p}, x, prev)
        np.testing.assert_allclose(y_s, y_b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s_s, s_b, rtol=1e-5, atol=1e-6)


def test_overfits_a_tiny_batch() -> None:
    # one block per stage, no middle: dec0_0 takes enc0_0's state and skip state, so gradients
    # also flow through the shared states
    module = registry.build_model(small_config(drop_path=0.1, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=0))
    lrms, pan, lms = inputs(jax.random.key(5), 2, 8, 8)
    gt = jnp.clip(lms + 0.3 * (pan - 0.5), 0.0, 1.0)  # detail the network has to take from the guide
    params = init_params(module, lrms, pan, lms, seed=6)
    tx = optax.adam(3e-3)

    def loss_fn(p, rng=None):  # train mode (drop path on) when given a key
        rngs = None if rng is None else {"dropout": rng}
        out = module.apply({"params": p}, lrms, pan, lms, train=rng is not None, rngs=rngs)
        return jnp.mean((out - gt) ** 2)

    @fast_jit
    def steps(p, o, key):  # 50 Adam steps per call
        def one(carry, rng):
            p, o = carry
            loss, g = jax.value_and_grad(loss_fn)(p, rng)
            updates, o = tx.update(g, o, p)
            return (optax.apply_updates(p, updates), o), (loss, optax.tree.norm(g))

        (p, o), (losses, norms) = jax.lax.scan(one, (p, o), jax.random.split(key, 50))
        return p, o, losses, norms

    start = float(fast_jit(loss_fn)(params))
    opt = tx.init(params)
    for i in range(3):
        params, opt, losses, norms = steps(params, opt, jax.random.key(i))
        assert bool(jnp.all(jnp.isfinite(norms)))
    final = float(fast_jit(loss_fn)(params))
    assert final < 0.1 * start, (start, final)


@pytest.mark.parametrize(
    "size,counts",
    [("tiny", (743_464, 757_311)), ("small", (2_574_344, 2_588_895)), ("base", (1_650_152, 1_664_639))],
)
def test_preset_parameter_counts(size, counts) -> None:
    # equal to sum(p.numel()) of the authors' PyTorch module built with the same yaml settings
    for (bands, guide), expected in zip(((8, 1), (31, 3)), counts):
        cfg = registry.default_config("le_mamba")
        cfg.update(dict(size=size, bands=bands, guide_bands=guide))
        module = build_le_mamba(cfg)
        x = jax.ShapeDtypeStruct((1, 16, 16, bands), jnp.float32)
        g = jax.ShapeDtypeStruct((1, 16, 16, guide), jnp.float32)
        shapes = jax.eval_shape(lambda a, b: module.init(jax.random.key(0), a, b, a), x, g)
        assert count_params(shapes["params"]) == expected


def test_config_is_checked() -> None:
    with pytest.raises(InputError, match="size"):
        build_le_mamba(small_config(size="huge"))
    with pytest.raises(InputError, match="state_share"):
        build_le_mamba(small_config(state_share="both"))
    with pytest.raises(InputError, match="enc_blocks"):
        build_le_mamba(small_config(enc_blocks=(1, 1)))
    assert registry.default_config("le_mamba").size == "small"


def test_auto_scan_method_per_backend() -> None:
    """'auto' (the config default): sequential on CPU; chunked with remat elsewhere."""
    from pansharp_jax.models.le_mamba import resolve_auto_scan

    assert registry.default_config("le_mamba").scan_method == "auto"
    assert resolve_auto_scan("cpu") == ("sequential", False)
    assert resolve_auto_scan("gpu") == ("chunked", True)
    if jax.default_backend() == "cpu":
        assert build_le_mamba(registry.default_config("le_mamba")).scan_method == "sequential"

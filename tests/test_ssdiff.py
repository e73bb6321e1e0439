"""SSDiff (pansharp_jax.generative.ssdiff): APFM / FMIM against NumPy references, the diffusion loss
against the core, deterministic sampling, overfitting, L-BAF freezing, and train -> fuse end to end."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.generative import diffusion, ssdiff
from pansharp_jax.models import registry
from pansharp_jax.train.optim import freeze_labels, make_optimizer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ----------------------------------------------------------------------------- helpers
def _tiny_cfg() -> ml_collections.ConfigDict:
    cfg = registry.default_config("ssdiff")
    cfg.update(bands=4, dim=16, model_channels=16, T=20, sample_steps=2, tile=16, tile_overlap=4, lora_rank=2, lora_alpha=2.0)
    return cfg


def _fill(shapes, seed: int = 0, lora_b: bool = False):
    """Test-side params: N(0, 1/fan_in) kernels and LoRA A, zero biases (and B unless ``lora_b``), unit scales."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = str(path[-1].key)
        if name == "scale":
            return np.ones(s.shape, np.float32)
        if name == "bias" or (name == "lora_b" and not lora_b):
            return np.zeros(s.shape, np.float32)
        fan_in = int(np.prod(s.shape[:-1])) or 1
        return (rng.normal(size=s.shape) / math.sqrt(fan_in)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def _flat(tree) -> dict[str, np.ndarray]:
    return {"/".join(str(k.key) for k in p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _batch(n: int, side: int, bands: int, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    lrms = rng.uniform(0.2, 0.8, (n, side // 4, side // 4, bands)).astype(np.float32)
    lms = np.repeat(np.repeat(lrms, 4, axis=1), 4, axis=2)
    pan = rng.uniform(0.2, 0.8, (n, side, side, 1)).astype(np.float32)
    gt = np.clip(lms + 0.3 * (pan - 0.5), 0, 1).astype(np.float32)
    return {k: jnp.asarray(v) for k, v in dict(lrms=lrms, lms=lms, pan=pan, gt=gt).items()}


@pytest.fixture(scope="module")
def tiny():
    cfg = _tiny_cfg()
    return cfg, registry.build_model(cfg), _fill(ssdiff.param_shapes(cfg))


@functools.lru_cache(maxsize=4)
def _loss_and_grad(model):
    return jax.jit(jax.value_and_grad(lambda p, b, k: model.apply({"params": p}, b, k, method="training_loss")[0]))


def _run(model, params, tx, steps: int, batch, key=None):
    """``steps`` optimizer updates of ``params`` with ``tx`` on one batch; (params, losses)."""

    @jax.jit
    def update(grads, state, p):
        upd, state = tx.update(grads, state, p)
        return optax.apply_updates(p, upd), state

    state, fn = tx.init(params), _loss_and_grad(model)
    losses = []
    for i in range(steps):
        loss, grads = fn(params, batch, key if key is not None else jax.random.PRNGKey(i))
        params, state = update(grads, state, params)
        losses.append(float(loss))
    return params, losses


# ----------------------------------------------------------------------------- building blocks
def test_fmim_fourier_scaling_matches_numpy() -> None:
    y = np.random.default_rng(1).normal(size=(2, 8, 6, 3)).astype(np.float32)
    for t, s in ((1, 0.3), (2, 0.6)):
        f = np.fft.fft2(y.astype(np.float64), axes=(1, 2))
        rows, cols = [k % 8 for k in range(-t, t)], [k % 6 for k in range(-t, t)]  # frequencies -t .. t-1
        f[:, np.ix_(rows, cols)[0], np.ix_(rows, cols)[1]] *= s
        want = np.real(np.fft.ifft2(f, axes=(1, 2)))
        np.testing.assert_allclose(np.asarray(ssdiff.fourier_scale(jnp.asarray(y), s, t)), want, atol=1e-5)
    const = np.full((1, 8, 8, 1), 2.0, np.float32)  # all energy at DC: scaled as a whole
    np.testing.assert_allclose(np.asarray(ssdiff.fourier_scale(jnp.asarray(const), 0.3, 1)), 0.6, atol=1e-6)
    x = np.ones((1, 2, 2, 4), np.float32)
    np.testing.assert_array_equal(np.asarray(ssdiff.channel_scale(jnp.asarray(x), 1.5))[0, 0, 0], [1.5, 1.5, 1.0, 1.0])


def test_pixel_shuffle_layout_and_round_trip() -> None:
    x = np.random.default_rng(2).normal(size=(1, 2, 3, 8)).astype(np.float32)  # r = 2, C = 2
    out = np.asarray(ssdiff.pixel_shuffle(jnp.asarray(x), 2))
    for i in range(2):
        for j in range(3):
            for di in range(2):
                for dj in range(2):
                    sub = (di * 2 + dj) * 2
                    np.testing.assert_array_equal(out[0, 2 * i + di, 2 * j + dj], x[0, i, j, sub : sub + 2])
    np.testing.assert_array_equal(np.asarray(ssdiff.pixel_unshuffle(jnp.asarray(out), 2)), x)


def _ln(t, p):
    mu = t.mean(-1, keepdims=True)
    return (t - mu) / np.sqrt(((t - mu) ** 2).mean(-1, keepdims=True) + 1e-6) * p["scale"] + p["bias"]


def _softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_apfm_matches_a_numpy_reference_of_the_spec() -> None:
    d, dh, heads, s = 8, 4, 2, 1.0  # lora alpha 2 / rank 2
    block = ssdiff.APFM(dh, 0.5, 0.2, 2, 2.0)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(1, 3, 4, d)).astype(np.float32), rng.normal(size=(1, 3, 4, d)).astype(np.float32)
    p = _fill(jax.eval_shape(block.init, jax.random.PRNGKey(0), x, y)["params"], seed=4, lora_b=True)
    p = jax.tree_util.tree_map_with_path(lambda path, v: v + 0.1 if str(path[-1].key) in ("bias", "scale") else v, p)
    q = jax.tree.map(lambda v: np.asarray(v, np.float64), p)
    w = lambda m: q[m]["kernel"] + s * q[m]["lora_a"] @ q[m]["lora_b"]  # noqa: E731
    n = 12
    xt, yt = x.reshape(n, d).astype(np.float64), y.reshape(n, d).astype(np.float64)
    xn, yn = _ln(xt, q["norm1"]), _ln(yt, q["norm1"])
    x1, x2, y1, y2 = (t @ w(m) for t, m in ((xn, "se1"), (xn, "se2"), (yn, "sa1"), (yn, "sa2")))
    fused = []
    for h in range(heads):
        c = slice(h * dh, (h + 1) * dh)
        a_sa = _softmax(y1[:, c] @ y2[:, c].T / math.sqrt(dh))  # (N, N)
        a_se = _softmax(x1[:, c].T @ x2[:, c] / math.sqrt(dh) / (n / dh))  # (dh, dh)
        fused.append((a_sa @ x1[:, c]) * (y1[:, c] @ a_se))
    out = xt + np.concatenate(fused, -1) @ w("proj") + q["proj"]["bias"]
    hid = _ln(out, q["norm2"]) @ w("fc1") + q["fc1"]["bias"]
    out = out + np.where(hid > 0, hid, 0.2 * hid) @ w("fc2") + q["fc2"]["bias"]
    got = np.asarray(block.apply({"params": p}, x, y)).reshape(n, d)
    np.testing.assert_allclose(got, out, rtol=1e-4, atol=1e-4)


def test_tiling_of_a_pointwise_denoiser_is_exact_and_sizes_are_checked(tiny) -> None:
    f = lambda p, x, t, c: x * 2.0 + c[..., :1] + t[:, None, None, None]  # noqa: E731
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 40, 36, 3))
    c = jax.random.normal(jax.random.PRNGKey(1), (2, 40, 36, 4))
    t = jnp.array([1.0, 2.0])
    for tile_batch in (0, 3):
        got = ssdiff.tiled(f, 16, 4, tile_batch)(None, x, t, c)
        np.testing.assert_allclose(np.asarray(got), np.asarray(f(None, x, t, c)), atol=1e-5)
    assert ssdiff.tile_starts(40, 16, 4) == [0, 12, 24] and ssdiff.tile_starts(16, 16, 4) == [0]
    cfg, model, params = tiny
    bad = _batch(1, 16, 4)
    with pytest.raises(InputError, match="not a multiple of 4"):
        model.apply({"params": params}, bad["lms"][:, :14, :14], jnp.zeros((1,), jnp.int32),
                    jnp.concatenate([bad["lms"], bad["pan"]], -1)[:, :14, :14], method="denoise")  # fmt: skip


# ----------------------------------------------------------------------------- the diffusion model
def _cosine_alpha_bar(T: int, s: float = 0.008) -> np.ndarray:
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    return np.cumprod(1.0 - np.minimum(1.0 - f[1:] / f[:-1], 0.999))


def test_training_loss_is_the_core_diffusion_loss(tiny) -> None:
    cfg, model, params = tiny
    batch, key = _batch(2, 16, 4), jax.random.PRNGKey(7)
    net = ssdiff.SSNet(**dict(ssdiff.net_fields(cfg)))
    apply = lambda p, x, t, c: net.apply({"params": p}, x, t, c)  # noqa: E731

    @jax.jit
    def losses(p, b, k):
        own = model.apply({"params": p}, b, k, method="training_loss")[0]
        schedule = diffusion.cosine_schedule(cfg.T)
        core = diffusion.pansharp_loss(apply, p["denoiser"], b, k, schedule, parameterisation="x0", loss="l1")
        k_t, k_n = jax.random.split(k)  # the core's documented key use, re-done by hand
        t = jax.random.randint(k_t, (2,), 0, cfg.T, dtype=jnp.int32)
        r0 = b["gt"] - b["lms"]
        noise = jax.random.normal(k_n, r0.shape, jnp.float32)
        ab = jnp.asarray(_cosine_alpha_bar(cfg.T), jnp.float32)[t][:, None, None, None]
        x_t = jnp.sqrt(ab) * r0 + jnp.sqrt(1 - ab) * noise
        manual = jnp.mean(jnp.abs(apply(p["denoiser"], x_t, t, jnp.concatenate([b["lms"], b["pan"]], -1)) - r0))
        return own, core, manual

    own, core, manual = (float(v) for v in losses(params, batch, key))
    assert own == core
    assert abs(own - manual) < 1e-5 and own > 0


def test_gradients_are_finite_and_lora_a_is_still_at_b0(tiny) -> None:
    cfg, model, params = tiny
    loss, grads = _loss_and_grad(model)(params, _batch(2, 16, 4), jax.random.PRNGKey(0))
    g = _flat(grads)
    assert np.isfinite(float(loss)) and all(np.all(np.isfinite(v)) for v in g.values())
    lora_a = [k for k in g if k.endswith("lora_a")]
    assert lora_a and all(not np.any(g[k]) for k in lora_a)  # dL/dA = x^T dL/dy B^T = 0 while B = 0
    assert any(np.any(g[k]) for k in g if k.endswith("lora_b"))
    for part in ("spectral_0", "spatial_4", "down_0", "up_1", "skip", "time_embed_0"):
        assert any(np.any(g[k]) for k in g if f"/{part}/" in f"/{k}"), part


def test_overfits_one_batch(tiny) -> None:
    cfg, model, params = tiny
    tx = optax.adam(3e-3)
    _, losses = _run(model, params, tx, 80, _batch(2, 16, 4, seed=5), key=jax.random.PRNGKey(3))
    assert losses[-1] < 0.25 * losses[0], (losses[0], losses[-1])


def test_lbaf_rounds_change_only_the_active_branch_lora(tiny) -> None:
    """The issue's acceptance: a fine-tuning round with the config's ``optim.frozen`` changes
    only the active branch's LoRA factors; every other leaf stays bit-identical."""
    cfg, model, params = tiny
    batch = _batch(2, 16, 4, seed=6)
    flat0 = _flat(params)
    is_lora = lambda k: k.rsplit("/", 1)[-1] in ("lora_a", "lora_b")  # noqa: E731
    expect = {b: {k for k in flat0 if k.startswith(f"denoiser/{b}_") and is_lora(k)} for b in ("spatial", "spectral")}
    assert len(expect["spatial"]) == 2 * 11 and len(expect["spectral"]) == 2 * 36  # (1 + 5 x 2) convs; (1 + 5 x 7) layers
    before = flat0
    current = params
    for branch in ("spatial", "spectral"):
        tx, _ = make_optimizer({"name": "adamw", "lr": 1e-2, "weight_decay": 0.0, "frozen": ssdiff.lbaf_frozen(cfg, branch)}, 10)
        current, _ = _run(model, current, tx, 3, batch)
        after = _flat(current)
        changed = {k for k in before if not np.array_equal(before[k], after[k])}
        assert changed == expect[branch], branch
        before = after
    # pre-training keeps every LoRA factor where it is (B = 0: the plain network)
    tx, _ = make_optimizer({"name": "adam", "lr": 1e-2, "frozen": ssdiff.lbaf_frozen(cfg, None)}, 10)
    pre, _ = _run(model, params, tx, 2, batch)
    after = _flat(pre)
    changed = {k for k in flat0 if not np.array_equal(flat0[k], after[k])}
    assert not changed & (expect["spatial"] | expect["spectral"]) and "denoiser/head_1/kernel" in changed


def test_config_forms_freeze_and_initialise_as_documented() -> None:
    from pansharp_jax.train.cli_args import load_config

    path = str(CONFIGS / "ssdiff_wv2_real.py")
    shapes = ssdiff.param_shapes(load_config(path).model)
    forms = (("finetune_spatial", "spatial", "=runs/ssdiff_wv2_real"), ("finetune_spectral", "spectral", "=runs/ssdiff_wv2_real_spatial"))
    for arg, branch, init in forms:
        c = load_config(f"{path}:{arg}")
        assert c.init_from == init
        labels = _flat(freeze_labels(shapes, tuple(c.optim.frozen.split(","))))
        train = {k for k, v in labels.items() if v == "train"}
        assert train and all(k.startswith(f"denoiser/{branch}_") and k.endswith(("lora_a", "lora_b")) for k in train)
    pre = load_config(path)
    labels = _flat(freeze_labels(shapes, tuple(pre.optim.frozen.split(","))))
    assert {k for k, v in labels.items() if v == "frozen"} == {k for k in labels if k.endswith(("lora_a", "lora_b"))}
    assert load_config(f"{path}:finetune").optim.frozen == load_config(f"{path}:finetune_spatial").optim.frozen
    with pytest.raises(InputError, match="unknown option"):
        load_config(f"{path}:nope")


def test_eval_output_is_deterministic_and_the_sampler_draws_several(tiny) -> None:
    cfg, model, params = tiny
    params = _fill(ssdiff.param_shapes(cfg), seed=1, lora_b=True)
    b = _batch(1, 24, 4, seed=8)  # 24 > tile 16: the tiled denoiser (2 x 2 windows)
    ev = jax.jit(lambda p, bb, k: model.apply({"params": p}, bb, k, method="eval_output"))
    k0 = jax.random.PRNGKey(11)
    first, second = np.asarray(ev(params, b, k0)), np.asarray(ev(params, b, k0))
    np.testing.assert_array_equal(first, second)
    assert first.shape == (1, 24, 24, 4) and np.all(np.isfinite(first))
    assert not np.allclose(first, np.asarray(ev(params, b, jax.random.PRNGKey(12))))
    assert np.abs(first - np.asarray(b["lms"])).max() > 1e-3  # a residual was sampled and added
    # the sampler hook (make_sampler, what Method.sample uses) through the array convenience
    mean, std = ssdiff.ssdiff_sampler({"params": params}, cfg)(b["lrms"][0], b["pan"][0, ..., 0], 3, samples=2, lms=b["lms"][0])
    assert mean.shape == std.shape == (24, 24, 4)
    assert np.all(np.isfinite(np.asarray(mean))) and np.asarray(std).max() > 1e-4 and np.asarray(std).min() >= 0
    from pansharp_jax.methods.sources import from_params

    assert from_params("ssdiff", params, cfg).generative


# ----------------------------------------------------------------------------- end to end
@pytest.mark.usefixtures("data_dir")
def test_lora_finetune_smoke_through_the_trainer_then_fuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``pansharp train`` with the ``:smoke,finetune_spatial`` form (random start: no pre-training
    run needed): between its two checkpoints only the spatial branch's LoRA factors change; then
    ``pansharp fuse --method ssdiff --ckpt`` runs on a 256 x 256 scene (tiled sampler)."""
    import orbax.checkpoint as ocp

    from pansharp_jax.cli import main

    def saved_params(step: int) -> dict[str, np.ndarray]:  # the raw saved state: no model rebuilt
        with ocp.StandardCheckpointer() as ck:
            return _flat(ck.restore(work / "checkpoints" / str(step) / "state")["params"])

    work, out = tmp_path / "run", tmp_path / "fused.npz"
    args = ["train", "--config", f"{CONFIGS / 'ssdiff_wv2_real.py'}:smoke,finetune_spatial", "--workdir", str(work),
            "--config.steps=2", "--config.checkpoint.every=1", "--config.eval_every=0", "--config.log_every=1"]  # fmt: skip
    assert main(args) == 0  # (no validation: eval_output has its own test above)
    assert "trained ssdiff to step 2" in capsys.readouterr().out
    a, b = saved_params(1), saved_params(2)
    changed = {k for k in a if not np.array_equal(a[k], b[k])}
    expect = {k for k in a if k.startswith("denoiser/spatial_") and k.endswith(("lora_a", "lora_b"))}
    assert changed == expect
    assert main(["fuse", "--method", "ssdiff", "--ckpt", str(work), "--input", "rr/wv3_cdif.mat", "--out", str(out)]) == 0
    with np.load(out) as z:
        arr = next(z[k] for k in z.files if z[k].ndim == 3)
    assert arr.shape == (256, 256, 8) and np.all(np.isfinite(arr))

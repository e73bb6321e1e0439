"""Mixed precision (``config.precision = 'bf16'``, ``pansharp fuse --precision bf16``).

For every registry model (tiny sizes, 16 x 16 PAN, batch 2) one bf16 train step runs, keeps
the parameters and the optimizer state float32, and its loss on a fixed batch and key is
within :data:`REL_TOL` of the float32 loss computed here with a plain ``module.apply``. The
bf16 FusionNet / PNN / CMT overfit one batch like the float32 ones of
``test_cnn_baselines.py``; the float32 master parameters follow a float32 run; ``fuse`` in bf16
is close to float32. Run with ``-s`` to see each model's matmul / conv dtype census.
"""

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

from pansharp_jax.cli import main
from pansharp_jax.errors import InputError
from pansharp_jax.models import registry
from pansharp_jax.train import precision as prec
from pansharp_jax.train.loop import model_hooks
from pansharp_jax.train.state import TrainState
from pansharp_jax.train.step import cluster_train_step, eval_step, train_step

BF16 = prec.get_policy("bf16")
# Counter-based keys: Flax's default threefry init dominates XLA's CPU compile of tiny models.
KEY = functools.partial(jax.random.key, impl="unsafe_rbg")

# Tiny sizes of every registered model (a few hundred to a few thousand parameters).
_VIT = dict(patch=4, embed_dim=16, depth=1, heads=2, decoder_dim=8, decoder_depth=1, decoder_heads=2)
TINY: dict[str, dict] = {
    "cannet": dict(bands=4, channels=4, cluster_num=4, kmeans_iters=3),
    "cmt": dict(bands=4, channels=8, num_blocks=1, heads=2, num_res_blocks=1),
    "crossdiff": dict(bands=4, widths=(8, 16), head_channels=8),
    "dicnn": dict(bands=4, channels=8),
    "drpnn": dict(bands=4, channels=8, num_blocks=1, kernel_size=3),
    "feinfn": dict(bands=5, guide_bands=3, zero_out=False, feats=8, blocks=1, spatial_dim=6, spatial_hidden=(12,), amp_hidden=(12,),
                   phase_hidden=(12,), decoder_width=12, decoder_layers=2, query_chunk=0),  # fmt: skip
    "fusionmamba": dict(bands=4, dim=8, scan_method="sequential"),
    "fusionnet": dict(bands=4, channels=8, num_res_blocks=1),
    "infn": dict(bands=5, guide_bands=3, zero_out=False, feats=8, blocks=1, hidden=(16,), query_chunk=0),
    "lagnet": dict(bands=4, channels=8, num_res_blocks=1),
    "le_mamba": dict(size="tiny", bands=4, width=8, levels=1, enc_blocks=(1,), dec_blocks=(1,), window=4, d_state=4,
                     local_d_state=4, conv=3, local_conv=3, drop_path=0.0, scan_method="sequential"),  # fmt: skip
    "mae": dict(bands=4, **_VIT),
    "msdcnn": dict(bands=4, deep_channels=(6, 6), shallow_channels=(8, 8)),
    "panadapter": dict(bands=4, features=8, blocks=1, lpe_dim=4, prior_dim=8, adapter_dim=16, adapter_heads=2,
                       tail_hidden=16, adapters=1),  # fmt: skip
    "pannet": dict(bands=4, channels=8, num_res_blocks=1),
    "pnn": dict(bands=4, channels=(16, 8), kernel_sizes=(5, 3, 3)),
    "sbm": dict(bands=4, base=8, mults=(1, 2), eval_steps=2, eval_samples=1),
    "ssdiff": dict(bands=4, dim=16, model_channels=16, T=20, sample_steps=2, tile=16, tile_overlap=4, lora_rank=2,
                   lora_alpha=2.0),  # fmt: skip
    "unfolding": dict(bands=4, stages=1, sensor="QB"),
}
_SUB_MAES = {"panadapter": ("vit",), "unfolding": ("mae", "consistency_mae")}

# |bf16 loss - fp32 loss| <= REL_TOL * |fp32 loss| on the fixed batch and key, the same for
# every family. bf16 keeps 8 significant bits (rounding 2^-9 = 2e-3 relative per value); a
# mean over ~2,000 values averages most of it out: measured 2e-5 (PNN) to 3.9e-3 (SBM, whose
# bridge loss divides small differences), CNNs <= 2.9e-3, attention 1.7e-3, Mamba 6e-4.
# 2e-2 leaves a 5x margin for other CPUs / XLA versions and still fails for a model that
# loses a term, overflows, or computes in a coarser format.
REL_TOL = 2e-2


def tiny_config(name: str) -> ml_collections.ConfigDict:
    cfg = registry.default_config(name)
    cfg.update(TINY[name])
    for sub in _SUB_MAES.get(name, ()):
        cfg[sub].update(_VIT, bands=cfg.bands)
    return cfg


def fixed_batch(cfg: ml_collections.ConfigDict, n: int = 2, size: int = 16, seed: int = 0) -> dict[str, jax.Array]:
    """gt uniform on [0.2, 0.8], lrms its 4 x 4 block mean, lms nearest upsampling, pan the band mean
    (MHIF models: the first ``guide_bands`` GT bands as the guide)."""
    r = np.random.default_rng(seed)
    b, g = int(cfg.bands), int(cfg.get("guide_bands", 1))
    gt = r.uniform(0.2, 0.8, (n, size, size, b)).astype(np.float32)
    lrms = gt.reshape(n, size // 4, 4, size // 4, 4, b).mean((2, 4))
    lms = np.repeat(np.repeat(lrms, 4, 1), 4, 2)
    pan = gt[..., :g] if g > 1 else gt.mean(-1, keepdims=True)
    return {k: jnp.asarray(v) for k, v in {"gt": gt, "lrms": lrms, "lms": lms, "pan": pan}.items()}


def _init(module, batch):  # noqa: ANN001, ANN202
    ex = [batch[k][:1] for k in ("lrms", "pan", "lms")]
    return jax.jit(lambda: module.init({"params": KEY(0)}, *ex, train=False))()["params"]


def _reference_loss(module, params, batch, key, own: bool) -> float:  # noqa: ANN001
    """The float32 loss written out here: the model's own objective, or the L1 of ``apply`` to the GT."""
    def fn(p):  # noqa: ANN001, ANN202
        if own:
            return module.apply({"params": p}, batch, key, method="training_loss", rngs={"dropout": key})[0]
        fused = module.apply({"params": p}, batch["lrms"], batch["pan"], batch["lms"], train=True, rngs={"dropout": key})
        return jnp.mean(jnp.abs(fused - batch["gt"]))

    return float(jax.jit(fn)(params))


def _float_dtypes(tree) -> set[str]:  # noqa: ANN001
    return {str(x.dtype) for x in jax.tree.leaves(tree) if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)}


# The seven slowest to compile on a 2-core CPU (selective scans, k-means, diffusion U-Nets,
# the unfolding's MAE prior, the adapters' ViT): three quarters of this file's time.
SLOW = {"fusionmamba", "le_mamba", "cannet", "ssdiff", "unfolding", "crossdiff", "panadapter"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(TINY)])
def test_bf16_train_step_keeps_fp32_state_and_matches_the_fp32_loss(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert sorted(TINY) == registry.names()  # a new registry model needs a tiny config here
    cfg = tiny_config(name)
    module = registry.build_model(cfg)
    own, _ = model_hooks(module)
    batch = fixed_batch(cfg)
    params = _init(module, batch)
    state = TrainState.create(apply_fn=module.apply, params=params, tx=optax.adam(1e-3), rng=jax.random.PRNGKey(1))
    key = jax.random.PRNGKey(5)
    if name == "cannet":  # the k-means model trains through the cluster step (fresh k-means, as its first epoch)
        from pansharp_jax.models.canconv import kmeans_indices_from

        step = jax.jit(lambda s, b, k: cluster_train_step(s, b, k, None, mode="init", extract=kmeans_indices_from, policy=BF16)[:2])
    else:
        step = jax.jit(functools.partial(train_step, loss="l1", own_objective=own, policy=BF16))
    new, metrics = step(state, batch, key)

    assert _float_dtypes((new.params, new.opt_state)) == {"float32"}
    assert jax.tree.structure(new.params) == jax.tree.structure(params)
    loss = float(metrics["loss"])
    assert metrics["loss"].dtype == jnp.float32 and math.isfinite(loss) and math.isfinite(float(metrics["grad_norm"]))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(new.params))
    ref = _reference_loss(module, params, batch, key, own)
    assert abs(loss - ref) <= REL_TOL * abs(ref), (loss, ref)

    census = prec.dot_census(lambda s: step(s, batch, key), state)  # traced, not compiled again
    with capsys.disabled():
        print(f"\n  {name}: bf16 loss {loss:.6g}, fp32 {ref:.6g} (rel {abs(loss - ref) / abs(ref):.1e}); {prec.format_census(census)}")
    bf16_ops = sum(n for (_, a, b), n in census.items() if a == b == "bfloat16")
    assert bf16_ops > 0, census  # the network really computes in bf16


# ---------------------------------------------------------------------------- overfit in bf16
def _overfit(module, params, batch, *, steps: int, lr: float, loss: str) -> tuple[float, float, float]:  # noqa: ANN001
    """(fp32 loss at init, fp32 loss of the trained master params, bf16 eval loss) after ``steps``
    bf16 Adam updates on one batch (the updates in one ``lax.scan``: one compile)."""
    ref = jax.jit(lambda p: jnp.mean(jnp.square(module.apply({"params": p}, batch["lrms"], batch["pan"], batch["lms"]) - batch["gt"])))
    state = TrainState.create(apply_fn=module.apply, params=params, tx=optax.adam(lr), rng=jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)

    @jax.jit
    def fit(s: TrainState) -> TrainState:
        return jax.lax.scan(lambda c, _: (train_step(c, batch, key, loss=loss, policy=BF16)[0], None), s, None, length=steps)[0]

    state = fit(state)
    assert _float_dtypes(state.params) == {"float32"}
    _, per_sample = jax.jit(functools.partial(eval_step, loss="l2", policy=BF16))(state, batch)
    return float(ref(params)), float(ref(state.params)), float(jnp.mean(per_sample))


@pytest.mark.parametrize("name", ["fusionnet", "pnn"])
def test_cnn_baselines_overfit_one_batch_in_bf16(name: str) -> None:
    """``test_cnn_baselines.test_overfits_one_tiny_batch`` in bf16: same narrow model, batch,
    optimizer, MSE and bar (the loss falls below a tenth of its initial value)."""
    from test_cnn_baselines import KEY as CNN_KEY
    from test_cnn_baselines import SMALL, _smooth_batch

    gt, lrms, pan, lms = _smooth_batch()
    cfg = registry.default_config(name)
    cfg.update(bands=4, **SMALL[name])
    module = registry.build_model(cfg)
    params = jax.jit(module.init)(CNN_KEY(0), lrms, pan, lms)["params"]
    loss0, final, final_bf16 = _overfit(module, params, {"gt": gt, "lrms": lrms, "pan": pan, "lms": lms}, steps=300, lr=3e-3, loss="l2")
    print(f"\n  {name} bf16 overfit: MSE {loss0:.3g} -> {final:.3g} (fp32 eval), {final_bf16:.3g} (bf16 eval)")
    assert final < 0.1 * loss0 and final_bf16 < 0.1 * loss0, (loss0, final, final_bf16)


def test_cmt_attention_model_overfits_one_batch_in_bf16() -> None:
    cfg = tiny_config("cmt")
    module = registry.build_model(cfg)
    r = np.random.default_rng(4)
    lrms = r.uniform(0.2, 0.8, (2, 4, 4, 4)).astype(np.float32)
    lms = np.repeat(np.repeat(lrms, 4, 1), 4, 2)
    pan = r.uniform(0, 1, (2, 16, 16, 1)).astype(np.float32)
    gt = lms + 0.1 * np.tanh(4 * (pan - 0.5)) * np.linspace(0.5, 1.0, 4, dtype=np.float32)  # PAN detail per band
    batch = {k: jnp.asarray(v) for k, v in {"gt": gt, "lrms": lrms, "pan": pan, "lms": lms}.items()}
    params = jax.jit(module.init)(KEY(5), lrms, pan, lms)["params"]
    loss0, final, final_bf16 = _overfit(module, params, batch, steps=200, lr=5e-3, loss="l1")
    print(f"\n  cmt bf16 overfit: MSE {loss0:.3g} -> {final:.3g} (fp32 eval), {final_bf16:.3g} (bf16 eval)")
    assert final < 0.1 * loss0 and final_bf16 < 0.1 * loss0, (loss0, final, final_bf16)


# ---------------------------------------------------------------------------- fp32 master params
def _tiny_fusionnet() -> tuple:
    cfg = tiny_config("fusionnet")
    module = registry.build_model(cfg)
    batch = fixed_batch(cfg)
    return module, batch, _init(module, batch)


def test_gradients_reach_the_fp32_master_params_below_bf16_resolution() -> None:
    """One bf16 SGD step of rate 1e-4 moves the float32 params by -1e-4 x the float32 gradient
    (computed here with ``jax.grad``): updates ~1e-5, far below bf16's resolution at the
    weights' scale (~1e-3), so bf16 master params could not hold them."""
    module, batch, params = _tiny_fusionnet()
    lr = 1e-4
    state = TrainState.create(apply_fn=module.apply, params=params, tx=optax.sgd(lr), rng=jax.random.PRNGKey(0))
    new, _ = jax.jit(functools.partial(train_step, loss="l1", policy=BF16))(state, batch, jax.random.PRNGKey(1))
    assert _float_dtypes(new.params) == {"float32"}

    def l1(p):  # noqa: ANN001, ANN202
        return jnp.mean(jnp.abs(module.apply({"params": p}, batch["lrms"], batch["pan"], batch["lms"]) - batch["gt"]))

    want = jax.tree.leaves(jax.jit(jax.grad(l1))(params))
    pairs = zip(jax.tree.leaves(params), jax.tree.leaves(new.params), strict=True)
    got = [(np.asarray(a, np.float64) - np.asarray(b, np.float64)) / lr for a, b in pairs]
    flat_w, flat_g = np.concatenate([np.ravel(w) for w in want]), np.concatenate([np.ravel(g) for g in got])
    assert np.linalg.norm(flat_g - flat_w) <= 0.05 * np.linalg.norm(flat_w)
    moved = np.abs(flat_g * lr)
    assert 0 < np.median(moved[moved > 0]) < 1e-4  # really below bf16's step at |w| ~ 0.1 (4e-4)


def test_master_params_after_bf16_steps_stay_fp32_and_close_to_an_fp32_run() -> None:
    module, batch, params = _tiny_fusionnet()
    steps, lr = 5, 1e-3
    state = TrainState.create(apply_fn=module.apply, params=params, tx=optax.adam(lr), rng=jax.random.PRNGKey(0))
    step = jax.jit(functools.partial(train_step, loss="l1", policy=BF16))
    for i in range(steps):
        state, _ = step(state, batch, jax.random.PRNGKey(i))
    # the float32 run, written out with optax
    opt = optax.adam(lr)

    @jax.jit
    def ref_step(p, o):  # noqa: ANN001, ANN202
        g = jax.grad(lambda q: jnp.mean(jnp.abs(module.apply({"params": q}, batch["lrms"], batch["pan"], batch["lms"]) - batch["gt"])))(p)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o

    p, o = params, opt.init(params)
    for _ in range(steps):
        p, o = ref_step(p, o)
    assert _float_dtypes((state.params, state.opt_state)) == {"float32"}
    a, b, p0 = (np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(t)]) for t in (state.params, p, params))
    # Adam moves every weight by about lr per step; bf16 gradients change the direction of few
    assert np.linalg.norm(a - b) <= 0.1 * np.linalg.norm(b - p0), (np.linalg.norm(a - b), np.linalg.norm(b - p0))


# ---------------------------------------------------------------------------- the policy itself
def test_cast_floating_touches_only_floating_leaves() -> None:
    tree = {"w": jnp.ones(2), "i": jnp.arange(3), "b": jnp.array([True]), "k": jax.random.key(0), "u": np.uint8(3),
            "h": np.ones(2, np.float16), "s": "name"}  # fmt: skip
    out = prec.cast_floating(tree, jnp.bfloat16)
    assert out["w"].dtype == jnp.bfloat16 and out["h"].dtype == jnp.bfloat16
    assert out["i"].dtype == tree["i"].dtype and out["b"].dtype == jnp.bool_ and out["u"].dtype == np.uint8
    assert out["k"] is tree["k"] and out["s"] == "name"


def test_bad_names_are_refused_with_the_field_and_the_allowed_values() -> None:
    from pansharp_jax.train.cli_args import load_config

    c = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.py")
    assert (c.precision, c.matmul_precision) == ("fp32", "default")
    assert prec.policy_from_config(c) == prec.FP32
    c.precision = "fp16"
    with pytest.raises(InputError, match=r"config\.precision must be one of 'fp32', 'bf16', got 'fp16'"):
        prec.policy_from_config(c)
    c.precision, c.matmul_precision = "BF16", "tf33"
    with pytest.raises(InputError, match=r"config\.matmul_precision must be one of 'default', 'tf32', 'highest', got 'tf33'"):
        prec.policy_from_config(c)
    c.matmul_precision = "highest"
    assert prec.policy_from_config(c) == prec.Policy("bf16", "highest")


@pytest.mark.parametrize("name,want", [("default", None), ("tf32", jax.lax.Precision.HIGH), ("highest", jax.lax.Precision.HIGHEST)])
def test_matmul_precision_reaches_every_dot_and_conv_of_the_step(name: str, want: object) -> None:
    module, batch, params = _tiny_fusionnet()
    state = TrainState.create(apply_fn=module.apply, params=params, tx=optax.adam(1e-3), rng=jax.random.PRNGKey(0))
    policy = prec.get_policy("fp32", name)
    jaxpr = jax.make_jaxpr(lambda s: train_step(s, batch, jax.random.PRNGKey(0), policy=policy))(state)
    found = [e.params["precision"] for e in _eqns(jaxpr.jaxpr) if e.primitive.name in ("conv_general_dilated", "dot_general")]
    assert len(found) >= 3  # forward and backward convs
    assert all(p == (None if want is None else (want, want)) for p in found), set(found)


def _eqns(jaxpr):  # noqa: ANN001, ANN202
    from jax.extend import core as jcore

    for e in jaxpr.eqns:
        yield e
        for v in e.params.values():
            for sub in v if isinstance(v, (list, tuple)) else (v,):
                if isinstance(sub, jcore.ClosedJaxpr):
                    yield from _eqns(sub.jaxpr)
                elif isinstance(sub, jcore.Jaxpr):
                    yield from _eqns(sub)


def test_layers_compute_in_bf16_after_fp32_constants_and_norm_statistics_stay_fp32() -> None:
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = nn.Dense(4)(x) + jnp.ones(4, jnp.float32)  # a float32 constant promotes the activations to float32
            x = nn.LayerNorm()(nn.Dense(4)(x))  # still bf16: the layer casts its input
            return nn.Dense(2, dtype=jnp.float32)(x)  # an explicit dtype is kept

    x = jnp.linspace(0, 1, 12, dtype=jnp.float32).reshape(3, 4)
    params = Net().init(KEY(0), x)["params"]
    def fwd(p, a):  # noqa: ANN001, ANN202
        with BF16.scope():
            return Net().apply({"params": BF16.cast_to_compute(p)}, BF16.cast_to_compute(a))

    census = prec.dot_census(fwd, params, x)
    assert census == {("dot_general", "bfloat16", "bfloat16"): 2, ("dot_general", "float32", "float32"): 1}, census
    plain = prec.dot_census(lambda p, a: Net().apply({"params": BF16.cast_to_compute(p)}, BF16.cast_to_compute(a)), params, x)
    assert plain[("dot_general", "float32", "float32")] == 2  # what the interceptor prevents
    sums = [e for e in _eqns(jax.make_jaxpr(fwd)(params, x).jaxpr) if e.primitive.name == "reduce_sum"]
    assert sums and all(e.invars[0].aval.dtype == jnp.float32 for e in sums)  # LayerNorm mean / variance
    with pytest.raises(InputError, match="precision must be one of"):
        prec.get_policy("float16")


# ---------------------------------------------------------------------------- inference and the loop
def test_methods_fuse_in_bf16_is_close_to_fp32_and_computes_in_bf16() -> None:
    from pansharp_jax.methods import from_params, resolve
    from pansharp_jax.methods.sources import fuse_with_policy

    module, batch, params = _tiny_fusionnet()
    cfg = tiny_config("fusionnet")
    lrms, pan = np.asarray(batch["lrms"]), np.asarray(batch["pan"])
    fp32 = from_params("fusionnet", params, cfg).fuse_arrays(lrms, pan, clip=False)
    bf16m = from_params("fusionnet", params, cfg, precision="bf16")
    bf16 = bf16m.fuse_arrays(lrms, pan, clip=False)
    assert bf16m.tags["precision"] == "bf16" and "bf16" in bf16m.origin
    assert np.all(np.isfinite(bf16)) and bf16.shape == fp32.shape
    # outputs ~0.5: bf16 rounds the inputs and the output to 2^-9 relative (~1e-3 here)
    assert np.abs(bf16 - fp32).max() < 1e-2 and np.abs(bf16 - fp32).mean() < 3e-3, np.abs(bf16 - fp32).max()
    census = prec.dot_census(lambda p: fuse_with_policy(p, lrms, pan, model_config=cfg, policy=BF16), params)
    assert set(census) == {("conv_general_dilated", "bfloat16", "bfloat16")}, census
    with pytest.raises(InputError, match="classical and takes no --precision"):
        resolve("gsa", precision="bf16")
    with pytest.raises(InputError, match="precision must be one of 'fp32', 'bf16', got 'fp16'"):
        resolve("fusionnet", weights="not_read.pth", precision="fp16")


def test_cli_fuse_bf16_with_released_weights_is_close_to_fp32(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pansharp_jax.data.demo import write_demo_scene

    scene = write_demo_scene(tmp_path / "demo_rr.npz", "rr")  # QB, 256 x 256 PAN
    weights = weights_dir / "fusionnet" / "QB" / "fusionnet.pth"
    outs = {}
    for p in ("fp32", "bf16"):
        outs[p] = tmp_path / f"{p}.npz"
        rc = main(["fuse", "-m", "fusionnet", "--weights", str(weights), "-i", str(scene), "-o", str(outs[p]),
                   "--no-clip", "--precision", p, "--no-progress"])  # fmt: skip
        out = capsys.readouterr()
        assert rc == 0, out.err
    assert "FusionNet: computing in bf16" in out.out
    with np.load(outs["fp32"]) as a, np.load(outs["bf16"]) as b:
        f32, b16 = a["fused"].astype(np.float64), b["fused"].astype(np.float64)
    err = np.abs(b16 - f32)
    with capsys.disabled():
        print(f"\n  fusionnet QB bf16 vs fp32 fuse: max {err.max():.2e}, mean {err.mean():.2e}")
    # released FusionNet on [0, 1] values: the product differs by bf16 rounding, not more
    assert err.mean() < 3e-3 and err.max() < 3e-2, (err.mean(), err.max())
    bad = ["fuse", "-m", "fusionnet", "--weights", str(weights), "-i", str(scene), "-o", str(tmp_path / "x.npz"), "--precision", "fp16"]
    rc = main(bad)
    assert rc == 2 and "--precision" in capsys.readouterr().err


def test_train_loop_runs_bf16_and_refuses_bad_precision_first(tmp_path: Path) -> None:
    from pansharp_jax.train.loop import train
    from pansharp_jax.train.testing import tiny_config as tiny_train_config
    from pansharp_jax.train.testing import write_synthetic_panc

    data = write_synthetic_panc(tmp_path / "train.h5", 8, seed=0)
    c = tiny_train_config(str(data), steps=3, batch_size=4)
    c.precision = "fp8"
    with pytest.raises(InputError, match=r"config\.precision must be one of 'fp32', 'bf16'"):
        train(c, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # refused before the workdir is touched
    c.precision = "bf16"
    result = train(c, tmp_path / "run")
    assert _float_dtypes((result.state.params, result.state.opt_state)) == {"float32"}
    losses = [h["loss"] for _, h in result.history]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)

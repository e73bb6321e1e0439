"""PanAdapter: shapes, the zero-initialised injection, EDSR import, and the two stages through the one trainer."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.models import panadapter as pa
from pansharp_jax.models.mae import MAE, mae_config, mae_fields
from pansharp_jax.nn.vit import Encoder, patchify, sincos_pos_embed_2d
from pansharp_jax.train.cli_args import load_config
from pansharp_jax.train.init_from import check_same_layout
from pansharp_jax.train.optim import freeze_labels

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "panadapter_wv2_real.py"
TINY = dict(features=8, blocks=2, lpe_dim=4, prior_dim=8, adapter_dim=16, adapter_heads=2, tail_hidden=16)


def _cfg(stage: int = 2, depth: int = 2, adapters: int = 2):
    cfg = pa.panadapter_config(4)
    cfg.update(TINY, stage=stage, adapters=adapters)
    cfg.vit.update(embed_dim=16, depth=depth, heads=2)
    return cfg


def _inputs(n: int = 2, h: int = 8, bands: int = 4):
    k = jax.random.split(jax.random.key(0), 3)
    lrms = jax.random.uniform(k[0], (n, h, h, bands))
    pan = jax.random.uniform(k[1], (n, 4 * h, 4 * h, 1))
    lms = jax.image.resize(lrms, (n, 4 * h, 4 * h, bands), "cubic")
    return lrms, pan, lms


def _random_params(module, *inputs, seed: int = 0):
    """Random values in the module's parameter layout (eval_shape: no init compile)."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.2, s.shape), jnp.float32), shapes)


def _leaves(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _counts(params, frozen) -> tuple[int, int]:
    labels = freeze_labels(params, tuple(frozen))
    sizes = [int(np.prod(np.shape(x))) for x in jax.tree.leaves(params)]
    train = [s for s, lab in zip(sizes, jax.tree.leaves(labels)) if lab == "train"]
    return sum(train), sum(sizes)


def test_shapes_trees_and_bad_inputs() -> None:
    lrms, pan, lms = _inputs()
    for stage, keys in ((1, {"spectral", "spatial", "prior_head"}),
                        (2, {"spectral", "spatial", "vit", "embed_a", "embed_b", "adapters", "tail"})):  # fmt: skip
        m = pa.build_panadapter(_cfg(stage))
        out, v = jax.eval_shape(lambda: m.init_with_output(jax.random.key(1), lrms, pan, lms))
        assert out.shape == lms.shape and set(v["params"]) == keys
        # one LPE per tap: the 2 blocks and the body's output; 3 x 4 features -> prior 8
        assert v["params"]["spatial"]["lpe"]["reduce"]["kernel"].shape == (3, 1, 1, 8, 4)
        assert v["params"]["spatial"]["fuse"]["kernel"].shape == (1, 1, 12, 8)
        assert v["params"]["spatial"]["body"]["head"]["kernel"].shape == (3, 3, 5, 8)  # LMS + PAN
        assert v["params"]["spectral"]["body"]["head"]["kernel"].shape == (3, 3, 4, 8)  # LRMS
    # token projections on the ViT's 4 x 4 grid (patch 8): A by 2 x 2 pixels, B by 8 x 8
    assert v["params"]["embed_a"]["kernel"].shape == (2 * 2 * 8, 16)
    assert v["params"]["embed_b"]["kernel"].shape == (8 * 8 * 8, 16)
    assert v["params"]["adapters"]["scale"].shape == (2,)
    with pytest.raises(InputError, match="bands"):
        m.init(jax.random.key(0), lrms[..., :3], pan, lms[..., :3])
    with pytest.raises(InputError, match="do not divide"):
        pa.build_panadapter(_cfg(2, depth=3, adapters=2)).init(jax.random.key(0), lrms, pan, lms)
    with pytest.raises(InputError, match="multiple of the ratio"):
        c = _cfg(2)
        c.vit.patch = 6
        pa.build_panadapter(c).init(jax.random.key(0), lrms, pan, lms)


def test_zero_scale_leaves_the_frozen_vit_path_unchanged() -> None:
    """With s = 0 the ViT tokens after all blocks and adapters are the plain backbone's
    (reference: per-band standardised LMS, embed + sine-cosine positions + nn.vit.Encoder on the same
    params); any s != 0 changes them."""
    m = pa.build_panadapter(_cfg(2, depth=4, adapters=2))
    lrms, pan, lms = _inputs()
    p = _random_params(m, lrms, pan, lms, seed=2)
    p["adapters"]["scale"] = jnp.zeros(2)  # as initialised (checked in the training test)
    path = jax.jit(lambda p: m.apply({"params": p}, lrms, pan, lms, return_vit=True))
    got = np.asarray(path(p))
    emb = p["vit"]["embed"]
    x = np.asarray(lms, np.float64)
    x = (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True) + 1e-6)  # the MAE's standardisation
    tokens = patchify(jnp.asarray(x, jnp.float32), 8) @ emb["kernel"] + emb["bias"] + sincos_pos_embed_2d(4, 4, 16)
    want = np.asarray(jax.jit(lambda t: Encoder(4, 2).apply({"params": p["vit"]["encoder"]}, t))(tokens))
    assert got.shape == (2, 16, 16)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    p2 = jax.tree.map(lambda a: a, p)
    p2["adapters"] = dict(p["adapters"], scale=jnp.asarray([0.5, 0.0]))
    assert np.max(np.abs(np.asarray(path(p2)) - want)) > 1e-3  # the first adapter injects before blocks 3-4


def _edsr_state_dict(rng: np.random.Generator, cin: int, f: int, blocks: int) -> dict[str, np.ndarray]:
    def conv(o: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.normal(0, 0.2, (o, i, 3, 3)).astype(np.float32), rng.normal(0, 0.1, (o,)).astype(np.float32)

    sd = {"sub_mean.weight": np.eye(3, dtype=np.float32)[..., None, None]}
    sd["head.0.weight"], sd["head.0.bias"] = conv(f, cin)
    for i in range(blocks):
        for j in (0, 2):
            sd[f"body.{i}.body.{j}.weight"], sd[f"body.{i}.body.{j}.bias"] = conv(f, f)
    sd[f"body.{blocks}.weight"], sd[f"body.{blocks}.bias"] = conv(f, f)
    sd["tail.0.0.weight"], sd["tail.0.0.bias"] = conv(4 * f, f)  # the upsampler: not used
    return sd


def _edsr_reference(x: np.ndarray, sd: dict[str, np.ndarray], blocks: int, tail: str) -> list[np.ndarray]:
    """EDSR's body written in PyTorch's NCHW / OIHW layout: the taps (block outputs, body output)."""

    def conv(a, name):
        y = jax.lax.conv_general_dilated(a, sd[name + ".weight"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + sd[name + ".bias"][None, :, None, None]

    h = conv(x, "head.0")
    y, taps = h, []
    for i in range(blocks):
        y = y + conv(jax.nn.relu(conv(y, f"body.{i}.body.0")), f"body.{i}.body.2")
        taps.append(y)
    return taps + [conv(y, tail) + h]


def test_stage2_starts_at_the_lms_and_the_tail_init_is_configurable() -> None:
    """The zero-initialised tail output makes a fresh stage-2 network return the LMS exactly;
    ``tail_zero_init=False`` (the released code's random init) does not."""
    lrms, pan, lms = _inputs()
    for zero in (True, False):
        cfg = _cfg(2, depth=1, adapters=1)
        cfg.tail_zero_init = zero
        m = pa.build_panadapter(cfg)
        out = np.asarray(jax.jit(lambda: m.apply(m.init(jax.random.key(3), lrms, pan, lms), lrms, pan, lms))())
        assert np.array_equal(out, np.asarray(lms)) == zero


def test_edsr_weights_load_into_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    sd = _edsr_state_dict(rng, cin=3, f=4, blocks=3)  # a file with 3 blocks; our body takes the first 2
    x = rng.uniform(size=(1, 3, 10, 10)).astype(np.float32)
    body = pa.EDSRBody(4, 2)
    params = _random_params(body, jnp.zeros((1, 10, 10, 3)))
    new, loaded = pa.edsr_body_params({"module." + k: v for k, v in sd.items()}, params)
    assert loaded == ["head.0", "body.0-1.body.0", "body.0-1.body.2", "body.3"]
    taps = np.asarray(body.apply({"params": new}, jnp.asarray(x.transpose(0, 2, 3, 1))))
    ref = _edsr_reference(x, sd, 2, "body.3")  # the file's body conv follows its 3 blocks
    assert taps.shape == (3, 1, 10, 10, 4)
    for t, r in zip(taps, ref):
        np.testing.assert_allclose(t, np.asarray(r).transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    # a PanAdapter's bodies: the RGB head does not fit 4 (LRMS) or 5 (LMS + PAN) inputs and is kept
    m = pa.build_panadapter(_cfg(1))
    lrms, pan, lms = _inputs(1)
    p = _random_params(m, lrms, pan, lms, seed=3)
    monkeypatch.setattr("pansharp_jax.models.torch_reader.load_torch_state_dict", lambda path: _edsr_state_dict(rng, 3, 8, 16))
    out, names = pa.import_edsr("edsr_baseline_x2.pt", p)
    assert names == [f"{b}: {t}" for b in ("spectral", "spatial") for t in ("body.0-1.body.0", "body.0-1.body.2", "body.16")]
    np.testing.assert_array_equal(out["spatial"]["body"]["head"]["kernel"], p["spatial"]["body"]["head"]["kernel"])
    assert not np.array_equal(out["spatial"]["body"]["tail"]["kernel"], p["spatial"]["body"]["tail"]["kernel"])
    with pytest.raises(InputError, match="at least 2 residual blocks"):
        pa.edsr_body_params(_edsr_state_dict(rng, 3, 4, 1), params)


def test_parameter_counts_and_the_mae_layout_of_the_backbone() -> None:
    """Trainable (stage 2) vs total parameters of the default model; its ViT has the MAE's layout
    (so ``init_from vit/embed=W@mae/embed,vit/encoder=W@mae/encoder`` fits)."""
    cfg = pa.panadapter_config(8)
    ex = (jnp.zeros((1, 16, 16, 8)), jnp.zeros((1, 64, 64, 1)), jnp.zeros((1, 64, 64, 8)))
    shapes = jax.eval_shape(lambda: pa.build_panadapter(cfg).init(jax.random.key(0), *ex))["params"]
    mae = jax.eval_shape(lambda: MAE(**dict(mae_fields(mae_config(8)))).init(jax.random.key(0), ex[2], mask_ratio=0.0))["params"]
    check_same_layout(mae["embed"], shapes["vit"]["embed"], "vit/embed")
    check_same_layout(mae["encoder"], shapes["vit"]["encoder"], "vit/encoder")
    trainable, total = _counts(shapes, pa.STAGE2_FROZEN)
    size = lambda t: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(t))  # noqa: E731
    assert trainable == sum(size(shapes[k]) for k in ("embed_a", "embed_b", "adapters", "tail"))
    assert total - trainable == size(shapes["spectral"]) + size(shapes["spatial"]) + size(mae["embed"]) + size(mae["encoder"])
    c1 = cfg.copy_and_resolve_references()
    c1.stage = 1
    s1 = size(jax.eval_shape(lambda: pa.build_panadapter(c1).init(jax.random.key(0), *ex))["params"])
    assert s1 == size(shapes["spectral"]) + size(shapes["spatial"]) + (3 * 3 * 128 + 1) * 8  # + the light head
    print(f"\nPanAdapter (default sizes, 8 bands) stage 2: trainable {trainable:,} of {total:,} parameters "
          f"({100 * trainable / total:.1f}%); stage 1: {s1:,} parameters, all trained by default")


def test_stage1_priors_fit_stage2_and_the_config_stages() -> None:
    """The stage-1 run's ``spectral`` / ``spatial`` trees are what stage 2's init_from replaces."""
    ex = (jnp.zeros((1, 16, 16, 8)), jnp.zeros((1, 64, 64, 1)), jnp.zeros((1, 64, 64, 8)))
    c1, c2 = load_config(f"{CONFIG}:stage1_smoke"), load_config(f"{CONFIG}:smoke")
    p1, p2 = (jax.eval_shape(lambda c=c: pa.build_panadapter(c.model).init(jax.random.key(0), *ex))["params"] for c in (c1, c2))
    for b in ("spectral", "spatial"):
        check_same_layout(p1[b], p2[b], b)
    assert (c1.model.stage, c2.model.stage, c1.optim.frozen, c2.optim.frozen) == (1, 2, "", ",".join(pa.STAGE2_FROZEN))
    full = load_config(f"{CONFIG}:stage2")
    assert "spectral=runs/panadapter_wv2_real_stage1@spectral" in full.init_from and "vit/encoder=runs/mae_wv2_real@mae/encoder" in full.init_from


@pytest.mark.usefixtures("data_dir")
def test_stage2_training_keeps_frozen_params_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few real steps of ``:smoke`` (stage 2) through the one trainer: the frozen priors and ViT
    are bit-identical to the trainer's own initial values; only projections / adapters / tail move."""
    from pansharp_jax.train import loop, parallel

    start: dict[str, dict[str, np.ndarray]] = {}
    real_init = loop.init_state

    def spy(config, example, mesh):  # the trainer's initial state, copied to the host
        state, schedule = real_init(config, example, mesh)
        start["params"] = _leaves(jax.tree.map(lambda a: np.array(a, copy=True), parallel.to_host(state.params)))
        return state, schedule

    monkeypatch.setattr(loop, "init_state", spy)
    config = load_config(f"{CONFIG}:smoke", ["--config.steps=3", "--config.eval_every=0", "--config.batch_size=2"])
    config.logging.console = False
    result = loop.train(config, tmp_path)
    before, after = start["params"], _leaves(result.params)
    assert before.keys() == after.keys() and result.history[-1][0] == 3
    assert not np.any(before["['adapters']['scale']"])  # zero-initialised: training starts from the frozen backbone
    labels = _leaves(freeze_labels(result.params, tuple(config.optim.frozen.split(","))))
    assert {k.split("'")[1] for k, lab in labels.items() if lab == "frozen"} == {"spectral", "spatial", "vit"}
    for k in after:
        if labels[k] == "frozen":
            np.testing.assert_array_equal(after[k], before[k], err_msg=k)  # bit-identical
    changed = {k for k in after if not np.array_equal(before[k], after[k])}
    assert changed and all(labels[k] == "train" for k in changed)
    for part in ("['embed_a']", "['embed_b']", "['tail']", "['adapters']['ctf_spatial']", "['adapters']['scale']"):
        assert any(k.startswith(part) for k in changed), part
    assert np.asarray(result.params["adapters"]["scale"])[0] != 0.0  # the first injection opened
    trainable, total = _counts(result.params, config.optim.frozen.split(","))
    print(f"\nPanAdapter :smoke stage 2: trainable {trainable:,} of {total:,} parameters")
    assert 0 < trainable < total

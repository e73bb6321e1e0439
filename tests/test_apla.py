"""APLA's networks and weight loading: diffusers-layout files written here from NumPy (an
independent key list built from the config), the zero-initialised temporal layers, the VGT,
the 1x1 discriminator, tokenizers, video I/O and the FCI stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from pansharp_jax.errors import InputError
from pansharp_jax.generative.apla import VGT, FrameDiscriminator, VGTConfig, frame_consistency, numpy_init, video_psnr
from pansharp_jax.generative.apla_load import convert_state_dict, load_part
from pansharp_jax.generative.apla_text import BPETokenizer, CLIPTextEncoder, HashTokenizer, TextConfig
from pansharp_jax.generative.apla_unet import UNetConfig, VideoUNet
from pansharp_jax.generative.apla_vae import AutoencoderKL, VAEConfig

UNET = {"in_channels": 4, "out_channels": 4, "block_out_channels": [8, 16], "layers_per_block": 1,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "attention_head_dim": 2, "cross_attention_dim": 12, "norm_num_groups": 4, "sample_size": 8}  # fmt: skip


# ----------------------------------------------------------------------------- independent key lists
def _lin(k: dict, n: str, i: int, o: int, bias: bool = True) -> None:
    k[f"{n}.weight"] = (o, i)
    if bias:
        k[f"{n}.bias"] = (o,)


def _conv(k: dict, n: str, i: int, o: int, s: int) -> None:
    k[f"{n}.weight"], k[f"{n}.bias"] = (o, i, s, s), (o,)


def _norm(k: dict, n: str, c: int) -> None:
    k[f"{n}.weight"], k[f"{n}.bias"] = (c,), (c,)


def _resnet(k: dict, n: str, i: int, o: int, temb: int | None) -> None:
    _norm(k, f"{n}.norm1", i)
    _conv(k, f"{n}.conv1", i, o, 3)
    if temb:
        _lin(k, f"{n}.time_emb_proj", temb, o)
    _norm(k, f"{n}.norm2", o)
    _conv(k, f"{n}.conv2", o, o, 3)
    if i != o:
        _conv(k, f"{n}.conv_shortcut", i, o, 1)


def _transformer(k: dict, n: str, c: int, cross: int, linear: bool) -> None:
    _norm(k, f"{n}.norm", c)
    (_lin if linear else lambda kk, nn_, i, o: _conv(kk, nn_, i, o, 1))(k, f"{n}.proj_in", c, c)
    b = f"{n}.transformer_blocks.0"
    for j in (1, 2, 3):
        _norm(k, f"{b}.norm{j}", c)
    for a, kv in (("attn1", c), ("attn2", cross)):
        _lin(k, f"{b}.{a}.to_q", c, c, False)
        _lin(k, f"{b}.{a}.to_k", kv, c, False)
        _lin(k, f"{b}.{a}.to_v", kv, c, False)
        _lin(k, f"{b}.{a}.to_out.0", c, c)
    _lin(k, f"{b}.ff.net.0.proj", c, 8 * c)
    _lin(k, f"{b}.ff.net.2", 4 * c, c)
    (_lin if linear else lambda kk, nn_, i, o: _conv(kk, nn_, i, o, 1))(k, f"{n}.proj_out", c, c)


def unet_keys(cfg: dict, linear: bool = False) -> dict[str, tuple[int, ...]]:
    """diffusers UNet2DConditionModel state-dict names and shapes, from the config alone."""
    k: dict[str, tuple[int, ...]] = {}
    ch, L, x = cfg["block_out_channels"], cfg["layers_per_block"], cfg["cross_attention_dim"]
    te = 4 * ch[0]
    _conv(k, "conv_in", cfg["in_channels"], ch[0], 3)
    _lin(k, "time_embedding.linear_1", ch[0], te)
    _lin(k, "time_embedding.linear_2", te, te)
    skips, prev = [ch[0]], ch[0]
    for i, t in enumerate(cfg["down_block_types"]):
        for j in range(L):
            _resnet(k, f"down_blocks.{i}.resnets.{j}", prev if j == 0 else ch[i], ch[i], te)
            if t.startswith("CrossAttn"):
                _transformer(k, f"down_blocks.{i}.attentions.{j}", ch[i], x, linear)
            skips.append(ch[i])
        prev = ch[i]
        if i < len(ch) - 1:
            _conv(k, f"down_blocks.{i}.downsamplers.0.conv", ch[i], ch[i], 3)
            skips.append(ch[i])
    _resnet(k, "mid_block.resnets.0", ch[-1], ch[-1], te)
    _transformer(k, "mid_block.attentions.0", ch[-1], x, linear)
    _resnet(k, "mid_block.resnets.1", ch[-1], ch[-1], te)
    rev = ch[::-1]
    for i, t in enumerate(cfg["up_block_types"]):
        for j in range(L + 1):
            _resnet(k, f"up_blocks.{i}.resnets.{j}", (prev if j == 0 else rev[i]) + skips.pop(), rev[i], te)
            if t.startswith("CrossAttn"):
                _transformer(k, f"up_blocks.{i}.attentions.{j}", rev[i], x, linear)
        prev = rev[i]
        if i < len(ch) - 1:
            _conv(k, f"up_blocks.{i}.upsamplers.0.conv", rev[i], rev[i], 3)
    _norm(k, "conv_norm_out", ch[0])
    _conv(k, "conv_out", ch[0], cfg["out_channels"], 3)
    return k


def vae_keys(ch: list[int], L: int, lat: int, old_attention: bool = False) -> dict[str, tuple[int, ...]]:
    """diffusers AutoencoderKL names and shapes (``old_attention``: query/key/value/proj_attn as 1x1 convs)."""
    k: dict[str, tuple[int, ...]] = {}

    def mid(p: str, c: int) -> None:
        _resnet(k, f"{p}.mid_block.resnets.0", c, c, None)
        _norm(k, f"{p}.mid_block.attentions.0.group_norm", c)
        names = ("query", "key", "value", "proj_attn") if old_attention else ("to_q", "to_k", "to_v", "to_out.0")
        for n in names:
            if old_attention:
                _conv(k, f"{p}.mid_block.attentions.0.{n}", c, c, 1)
            else:
                _lin(k, f"{p}.mid_block.attentions.0.{n}", c, c)
        _resnet(k, f"{p}.mid_block.resnets.1", c, c, None)

    _conv(k, "encoder.conv_in", 3, ch[0], 3)
    prev = ch[0]
    for i, c in enumerate(ch):
        for j in range(L):
            _resnet(k, f"encoder.down_blocks.{i}.resnets.{j}", prev if j == 0 else c, c, None)
        prev = c
        if i < len(ch) - 1:
            _conv(k, f"encoder.down_blocks.{i}.downsamplers.0.conv", c, c, 3)
    mid("encoder", ch[-1])
    _norm(k, "encoder.conv_norm_out", ch[-1])
    _conv(k, "encoder.conv_out", ch[-1], 2 * lat, 3)
    _conv(k, "quant_conv", 2 * lat, 2 * lat, 1)
    _conv(k, "post_quant_conv", lat, lat, 1)
    rev = ch[::-1]
    _conv(k, "decoder.conv_in", lat, rev[0], 3)
    mid("decoder", rev[0])
    prev = rev[0]
    for i, c in enumerate(rev):
        for j in range(L + 1):
            _resnet(k, f"decoder.up_blocks.{i}.resnets.{j}", prev if j == 0 else c, c, None)
        prev = c
        if i < len(rev) - 1:
            _conv(k, f"decoder.up_blocks.{i}.upsamplers.0.conv", c, c, 3)
    _norm(k, "decoder.conv_norm_out", ch[0])
    _conv(k, "decoder.conv_out", ch[0], 3, 3)
    return k


def clip_keys(v: int, d: int, inter: int, layers: int, pos: int) -> dict[str, tuple[int, ...]]:
    """transformers CLIPTextModel names and shapes."""
    k: dict[str, tuple[int, ...]] = {"text_model.embeddings.token_embedding.weight": (v, d),
                                     "text_model.embeddings.position_embedding.weight": (pos, d)}  # fmt: skip
    for i in range(layers):
        p = f"text_model.encoder.layers.{i}"
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            _lin(k, f"{p}.self_attn.{n}", d, d)
        _norm(k, f"{p}.layer_norm1", d)
        _norm(k, f"{p}.layer_norm2", d)
        _lin(k, f"{p}.mlp.fc1", d, inter)
        _lin(k, f"{p}.mlp.fc2", inter, d)
    _norm(k, "text_model.final_layer_norm", d)
    return k


def _random_state(keys: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rs = np.random.default_rng(seed)
    return {n: rs.standard_normal(s).astype(np.float32) for n, s in keys.items()}


def _write_part(root: Path, part: str, cfg: dict, state: dict[str, np.ndarray], fname: str) -> None:
    (root / part).mkdir(parents=True, exist_ok=True)
    (root / part / "config.json").write_text(json.dumps(cfg))
    save_file(state, str(root / part / fname))


def _unet_shapes(cfg: UNetConfig, temporal: bool = True) -> dict:
    m = VideoUNet(cfg, temporal=temporal)
    x, t, c = jnp.zeros((1, 2, 8, 8, 4)), jnp.zeros((1,), jnp.int32), jnp.zeros((1, 3, cfg.cross_attention_dim))
    return jax.eval_shape(m.init, jax.random.key(0), x, t, c)["params"]


# ----------------------------------------------------------------------------- loading
@pytest.mark.parametrize("linear", [False, True], ids=["conv_proj", "linear_proj"])
def test_unet_loads_diffusers_layout(tmp_path: Path, linear: bool) -> None:
    raw = {**UNET, "use_linear_projection": linear}
    keys = unet_keys(raw, linear)
    state = _random_state(keys)
    _write_part(tmp_path, "unet", raw, state, "diffusion_pytorch_model.safetensors")
    cfg = UNetConfig.from_dict(json.loads((tmp_path / "unet" / "config.json").read_text()))
    target = numpy_init(_unet_shapes(cfg), 1)
    p = load_part(tmp_path, "unet", target)
    np.testing.assert_array_equal(p["conv_in"]["kernel"], state["conv_in.weight"].transpose(2, 3, 1, 0))
    a2 = "down_blocks.0.attentions.0.transformer_blocks.0.attn2"
    np.testing.assert_array_equal(p["down_blocks_0"]["attentions_0"]["transformer_blocks_0"]["attn2"]["to_k"]["kernel"], state[f"{a2}.to_k.weight"].T)
    np.testing.assert_array_equal(p["up_blocks_1"]["attentions_1"]["transformer_blocks_0"]["ff"]["net_0"]["proj"]["bias"],
                                  state["up_blocks.1.attentions.1.transformer_blocks.0.ff.net.0.proj.bias"])  # fmt: skip
    np.testing.assert_array_equal(p["mid_block"]["resnets_1"]["norm2"]["scale"], state["mid_block.resnets.1.norm2.weight"])
    pin = p["mid_block"]["attentions_0"]["proj_in"]["kernel"]
    want = state["mid_block.attentions.0.proj_in.weight"]
    np.testing.assert_array_equal(pin, want.T if linear else want.transpose(2, 3, 1, 0))
    # the temporal layers are new: kept from the init (zero output projection)
    temp = p["down_blocks_0"]["attentions_0"]["transformer_blocks_0"]["attn_temp"]["to_out_0"]["kernel"]
    assert np.all(np.asarray(temp) == 0)
    n_loaded = sum(int(np.prod(v)) for v in keys.values())
    n_temporal = sum(np.size(x) for pth, x in jax.tree_util.tree_leaves_with_path(target) if "temp" in jax.tree_util.keystr(pth))
    assert n_loaded + n_temporal == sum(np.size(x) for x in jax.tree.leaves(p))


def test_loader_rejects_wrong_files(tmp_path: Path) -> None:
    cfg = UNetConfig.from_dict(UNET)
    target = numpy_init(_unet_shapes(cfg), 1)
    state = _random_state(unet_keys(UNET))
    bad = dict(state)
    del bad["mid_block.resnets.0.conv1.weight"]
    with pytest.raises(InputError, match="missing"):
        convert_state_dict(bad, target)
    bad = {**state, "conv_in.weight": np.zeros((8, 4, 5, 5), np.float32)}
    with pytest.raises(InputError, match="shape"):
        convert_state_dict(bad, target)
    with pytest.raises(InputError, match="no counterpart"):
        convert_state_dict({**state, "add_embedding.linear_1.weight": np.zeros((4, 4), np.float32)}, target)
    with pytest.raises(InputError, match="no weights"):
        load_part(tmp_path, "unet", target)
    with pytest.raises(InputError, match="unsupported"):
        UNetConfig.from_dict({**UNET, "down_block_types": ["SimpleCrossAttnDownBlock2D", "DownBlock2D"]})


@pytest.mark.parametrize("old", [False, True], ids=["new_names", "old_conv_names"])
def test_vae_loads_diffusers_layout(tmp_path: Path, old: bool) -> None:
    raw = {"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4, "latent_channels": 4}
    state = _random_state(vae_keys(raw["block_out_channels"], 1, 4, old))
    _write_part(tmp_path, "vae", raw, state, "diffusion_pytorch_model.safetensors")
    cfg = VAEConfig.from_dict(raw)
    vae = AutoencoderKL(cfg)
    target = jax.eval_shape(vae.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    p = load_part(tmp_path, "vae", target)
    q = state["encoder.mid_block.attentions.0." + ("query" if old else "to_q") + ".weight"]
    q = q[:, :, 0, 0] if old else q
    np.testing.assert_array_equal(p["encoder"]["mid_block"]["attentions_0"]["to_q"]["kernel"], q.T)
    mean, logvar = jax.eval_shape(lambda x: vae.apply({"params": p}, x, method=AutoencoderKL.encode), jnp.zeros((2, 16, 16, 3)))
    assert mean.shape == (2, 8, 8, 4) and cfg.factor == 2


def test_text_encoder_loads_and_is_causal(tmp_path: Path) -> None:
    raw = {"vocab_size": 50, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
           "max_position_embeddings": 6, "hidden_act": "quick_gelu"}  # fmt: skip
    state = _random_state(clip_keys(50, 8, 16, 2, 6))
    state["text_model.embeddings.position_ids"] = np.arange(6, dtype=np.int64)[None]
    _write_part(tmp_path, "text_encoder", raw, state, "model.safetensors")
    enc = CLIPTextEncoder(TextConfig.from_dict(raw))
    target = jax.eval_shape(enc.init, jax.random.key(0), jnp.zeros((1, 6), jnp.int32))["params"]
    p = load_part(tmp_path, "text_encoder", target)
    np.testing.assert_array_equal(p["text_model"]["embeddings"]["token_embedding"]["embedding"], state["text_model.embeddings.token_embedding.weight"])
    f = jax.jit(lambda ids: enc.apply({"params": p}, ids))
    a = np.asarray(f(jnp.array([[0, 5, 7, 9, 1, 1]])))
    b = np.asarray(f(jnp.array([[0, 5, 7, 3, 4, 4]])))
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-6)  # causal: earlier tokens ignore later ones
    assert np.abs(a[:, 3:] - b[:, 3:]).max() > 1e-3


def test_unet_matches_diffusers(tmp_path: Path) -> None:
    """Our UNet equals diffusers' on the same input to 1e-4 (needs PyTorch and diffusers)."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: no parity check with diffusers")
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed: no parity check")
    torch.manual_seed(0)
    ref = diffusers.UNet2DConditionModel(**UNET).eval()
    ref.save_pretrained(str(tmp_path / "unet"), safe_serialization=True)
    cfg = UNetConfig.from_dict(UNET)
    p = load_part(tmp_path, "unet", numpy_init(_unet_shapes(cfg), 0))
    rs = np.random.default_rng(0)
    x = rs.standard_normal((2, 4, 8, 8)).astype(np.float32)
    ctx = rs.standard_normal((2, 3, 12)).astype(np.float32)
    t = np.array([10, 700])
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(ctx)).sample.numpy()
    got = VideoUNet(cfg).apply({"params": p}, jnp.asarray(x.transpose(0, 2, 3, 1))[:, None], jnp.asarray(t), jnp.asarray(ctx))
    np.testing.assert_allclose(np.asarray(got)[:, 0].transpose(0, 3, 1, 2), want, atol=1e-4)


# ----------------------------------------------------------------------------- inflation
def test_zero_init_temporal_layers_keep_the_image_model() -> None:
    cfg = UNetConfig.from_dict(UNET)
    video_p = numpy_init(_unet_shapes(cfg), 3)
    image_shapes = _unet_shapes(cfg, temporal=False)
    image_p = jax.tree.map(lambda s, v: v, image_shapes, {k: _drop_temporal(v) for k, v in video_p.items()})
    rs = np.random.default_rng(1)
    x = jnp.asarray(rs.standard_normal((1, 3, 8, 8, 4)), jnp.float32)
    t, ctx = jnp.array([321]), jnp.asarray(rs.standard_normal((1, 3, 12)), jnp.float32)
    vid = jax.jit(lambda p, x: VideoUNet(cfg).apply({"params": p}, x, t, ctx))
    img = jax.jit(lambda p, x: VideoUNet(cfg, temporal=False).apply({"params": p}, x, t, ctx))
    a = np.asarray(vid(video_p, x))
    b = np.stack([np.asarray(img(image_p, x[:, i : i + 1]))[:, 0] for i in range(3)], axis=1)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # a frame change does not leak into other frames ... until the temporal layers are non-zero
    x2 = x.at[:, 0].add(1.0)
    assert np.abs(np.asarray(vid(video_p, x2))[:, 1:] - a[:, 1:]).max() < 1e-5
    live = jax.tree_util.tree_map_with_path(
        lambda pth, v: v + 0.3 if "attn_temp" in jax.tree_util.keystr(pth) and "to_out_0" in jax.tree_util.keystr(pth) else v, video_p)
    c = np.asarray(vid(live, x))
    d = np.asarray(vid(live, x2))
    assert np.abs(d[:, 1:] - c[:, 1:]).max() > 1e-3


def _drop_temporal(tree: object) -> object:
    if isinstance(tree, dict):
        return {k: _drop_temporal(v) for k, v in tree.items() if k not in ("attn_temp", "norm_temp")}
    return tree


# ----------------------------------------------------------------------------- VGT and D
@pytest.mark.parametrize("variant", ["hyper", "pure"])
def test_vgt_starts_at_zero_and_is_frame_causal(variant: str) -> None:
    vgt = VGT(VGTConfig(variant=variant, dim=8, depth=1, heads=2, patch=2, scale=0.1))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 3, 4, 4, 4)), jnp.float32)
    t = jnp.array([5])
    p = numpy_init({"vgt": jax.eval_shape(vgt.init, jax.random.key(0), x, x, t)["params"]}, 0)["vgt"]
    f = jax.jit(lambda p, a: vgt.apply({"params": p}, a, a, t))
    assert np.all(np.asarray(f(p, x)) == 0)  # zero head: APLA starts as the plain model
    k = np.random.default_rng(1).standard_normal(p["head"]["kernel"].shape).astype(np.float32)
    p = {**p, "head": {"kernel": jnp.asarray(k), "bias": p["head"]["bias"]}}
    a = np.asarray(f(p, x))
    b = np.asarray(f(p, x.at[:, 2].add(2.0)))
    assert np.abs(a).max() < 0.1 + 1e-6 and np.abs(a).max() > 1e-3
    np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-6)  # decoder-only: earlier frames ignore later ones
    assert np.abs(a[:, 2] - b[:, 2]).max() > 1e-4


def test_discriminator_is_pointwise_on_frame_pairs() -> None:
    d = FrameDiscriminator(8)
    z = jnp.asarray(np.random.default_rng(0).standard_normal((1, 3, 4, 4, 4)), jnp.float32)
    p = d.init(jax.random.key(0), z)["params"]
    assert np.asarray(d.apply({"params": p}, z)).shape == (1, 2, 4, 4)
    g = np.asarray(jax.grad(lambda z: d.apply({"params": p}, z)[0, 1, 2, 3])(z))
    nz = np.argwhere(np.abs(g).sum(-1) > 0)
    assert {tuple(r) for r in nz} <= {(0, 1, 2, 3), (0, 2, 2, 3)} and len(nz) == 2


# ----------------------------------------------------------------------------- tokenizers, metrics, video I/O
def test_tokenizers(tmp_path: Path) -> None:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "l": 2, "o": 3, "w": 4, "w</w>": 5, "lo": 6, "low</w>": 7, "e": 8,
             "r</w>": 9, "low": 10, "er</w>": 11, "lower</w>": 12}  # fmt: skip
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nl o\nlo w</w>\nlo w\ne r</w>\nlow er</w>\n")
    tok = BPETokenizer.from_folder(tmp_path, max_length=6)
    np.testing.assert_array_equal(tok(["Low  LOWER"]), [[0, 7, 12, 1, 1, 1]])
    h = HashTokenizer(100, 8)
    a, b = h(["a red car"]), h(["a red car"])
    np.testing.assert_array_equal(a, b)
    assert a[0, 0] == 0 and a[0, 4] == 1 and np.all((a >= 0) & (a < 100)) and len(set(a[0, 1:4])) == 3


def test_frame_consistency_and_psnr() -> None:
    rs = np.random.default_rng(0)
    still = np.repeat(rs.random((1, 16, 16, 3)), 4, axis=0).astype(np.float32)
    noisy = rs.random((4, 16, 16, 3)).astype(np.float32)
    s, n = frame_consistency(still), frame_consistency(noisy)
    assert abs(s["fci_pix"] - 1.0) < 1e-6 and abs(s["fci_conv"] - 1.0) < 1e-6
    assert n["fci_pix"] < 0.2 and n["fci_conv"] < s["fci_conv"]
    assert abs(video_psnr(np.zeros((2, 4, 4, 3)), np.full((2, 4, 4, 3), 0.1)) - 20.0) < 1e-9


def test_video_io_roundtrip(tmp_path: Path) -> None:
    from pansharp_jax.data.video import camera_clip, contact_sheet, fit_frames, read_video, write_video

    img = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    clip = camera_clip(img, frames=3, size=16, step=4, direction=(0, 1))
    np.testing.assert_array_equal(clip[2], img[:16, 8:24])
    write_video(tmp_path / "c.gif", clip)
    back = read_video(tmp_path / "c.gif")
    assert back.shape == (3, 16, 16, 3)
    np.save(tmp_path / "c.npy", clip)
    np.testing.assert_array_equal(read_video(tmp_path / "c.npy"), clip)
    assert fit_frames(clip, 2, 8).shape == (2, 8, 8, 3)
    contact_sheet(tmp_path / "s.png", np.stack([clip, clip]), gap=2)
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (3 * 16 + 4, 2 * 16 + 2)
    with pytest.raises(InputError):
        camera_clip(img, frames=10, size=16, step=4)
    with pytest.raises(InputError, match="gif"):
        write_video(tmp_path / "c.avi", clip)

"""APLA: one-video text-to-video diffusion with a Video Generation Transformer (VGT) and a 1x1
adversarial discriminator (Yao et al., arXiv:2308.12605), on an inflated Stable Diffusion.

Pieces (NTHWC arrays; latents (B, T, h, w, C) are the VAE's scaled posterior means):

* the frozen CLIP text encoder (:mod:`~pansharp_jax.generative.apla_text`) and VAE
  (:mod:`~pansharp_jax.generative.apla_vae`), and the inflated eps-UNet
  (:mod:`~pansharp_jax.generative.apla_unet`, Tune-A-Video style temporal attention);
* :class:`VGT`: reads the denoiser's input ``x_t`` and the UNet's ``eps_unet`` (concatenated per
  pixel, (B, T, h, w, 2C)) with the timestep, and emits a perturbation ``delta``; the model's
  noise prediction is ``eps = eps_unet + delta`` — the perturbation is added to the *predicted*
  latent noise, before the sampler (or the loss) sees it. ``delta = scale * tanh(head)`` with
  ``scale`` = ``vgt.scale`` (0.1) and a zero-initialised ``head``, so the perturbation is small
  (|delta| < scale) and APLA starts equal to the plain model. VGT-Hyper (default) = conv stem
  (3x3) + patch embedding (p x p, stride p) + ``depth`` decoder-only blocks (pre-LN
  multi-head self-attention with a frame-causal mask: a token of frame t sees frames <= t;
  an MLP with a depthwise 3x3 convolution over each frame's token grid, SegFormer's Mix-FFN)
  + a linear un-patchify head. VGT-Pure drops both convolutions. Tokens get fixed sinusoidal
  frame and position codes and a learned projection of the timestep embedding.
* :class:`FrameDiscriminator`: three 1x1 convolutions (LeakyReLU 0.2) on pairs of consecutive
  latent frames concatenated along channels, (B, T-1, h, w, 2C) -> per-pixel logits; "real" =
  the input video's latents, "fake" = the model's x0 estimate ``(x_t - sqrt(1-ab) eps) / sqrt(ab)``;
  the non-saturating GAN loss (``softplus(-D(real)) + softplus(D(fake))`` for D,
  ``softplus(-D(fake))`` for the generator), weight ``adv_weight`` (0.05). It judges whether two
  consecutive frames belong together, so it pushes temporal coherence.
* Hyper-loss on eps: ``mse_weight * MSE + l1_weight * L1`` (1.0 and 1.0) ``+ perceptual_weight *
  perceptual`` where no perceptual network exists offline (no VGG weights): the weight must stay
  0 (a non-zero value raises).

Everything the public record leaves open (VGT width 64, depth 2, 4 heads, patch 2, MLP ratio 2,
scale 0.1, loss and GAN weights, D width 64) is ours. The noise schedule is SD's
``scaled_linear`` (0.00085 -> 0.012, T = 1000) and sampling is the DDIM of
:mod:`pansharp_jax.generative.diffusion` (its evenly spaced sub-sequence, not diffusers'
``range(0, T, T // N)``), vmapped over videos by ``sample_many``; classifier-free guidance
with the empty prompt when ``guidance != 1``.

Frame consistency (:func:`frame_consistency`): CLIP is not available offline, so FCI here is a
documented stand-in — the mean cosine similarity of consecutive frames' features from a fixed
extractor: ``fci_pix`` (raw pixels minus 0.5) and ``fci_conv`` (a fixed random 3-layer conv
net, NumPy seed 0, He-normal weights, 3x3 stride-2 convolutions 3->16->32->64 with ReLU,
flattened feature map). Not comparable with the paper's CLIP-based numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.generative import diffusion
from pansharp_jax.generative.apla_text import CLIPTextEncoder, TextConfig
from pansharp_jax.generative.apla_unet import Attention, UNetConfig, VideoUNet, timestep_embedding
from pansharp_jax.generative.apla_vae import AutoencoderKL, VAEConfig, decode_video, encode_video

VGT_VARIANTS = ("hyper", "pure", "none")


@dataclasses.dataclass(frozen=True)
class VGTConfig:
    """The VGT (module docstring); ``variant='none'`` removes it (the plain model)."""

    variant: str = "hyper"
    dim: int = 64
    depth: int = 2
    heads: int = 4
    patch: int = 2
    mlp_ratio: int = 2
    scale: float = 0.1


@dataclasses.dataclass(frozen=True)
class APLAConfig:
    """The whole model: sub-configs, frame attention, loss weights, D width, schedule."""

    unet: UNetConfig = UNetConfig()
    vae: VAEConfig = VAEConfig()
    text: TextConfig = TextConfig()
    vgt: VGTConfig = VGTConfig()
    frame_attention: str = "self"
    mse_weight: float = 1.0
    l1_weight: float = 1.0
    perceptual_weight: float = 0.0
    adv_weight: float = 0.05
    disc_channels: int = 64
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    train_timesteps: int = 1000

    def __post_init__(self) -> None:
        if self.vgt.variant not in VGT_VARIANTS:
            raise InputError(f"unknown VGT variant {self.vgt.variant!r}: use {', '.join(VGT_VARIANTS)}")
        if self.perceptual_weight != 0.0:
            raise InputError("perceptual_weight must be 0: no perceptual (VGG) network is available offline")

    @classmethod
    def from_dict(cls, d: Any) -> APLAConfig:
        """From a (Config)dict with ``unet``, ``vae``, ``text``, ``vgt`` sub-dicts and flat fields."""
        d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
        sub = {"unet": UNetConfig.from_dict, "vae": VAEConfig.from_dict, "text": TextConfig.from_dict,
               "vgt": lambda x: VGTConfig(**dict(x))}  # fmt: skip
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (sub[k](v) if k in sub else v) for k, v in d.items() if k in names}
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (inverse of :meth:`from_dict`)."""
        return json_safe(dataclasses.asdict(self))


def json_safe(x: Any) -> Any:
    """Tuples -> lists, recursively (for JSON)."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def schedule(cfg: APLAConfig) -> diffusion.Schedule:
    """The training/sampling noise schedule of ``cfg`` (SD's scaled_linear by default)."""
    from pansharp_jax.generative.apla_load import sd_betas

    return diffusion.schedule_from_betas(sd_betas(cfg.train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule))


# ----------------------------------------------------------------------------- VGT and D
def _sincos(n: int, d: int) -> np.ndarray:
    """Fixed sinusoidal codes (n, d)."""
    pos = np.arange(n)[:, None].astype(np.float64)
    freq = np.exp(-math.log(10000.0) * np.arange(0, d, 2) / d)[None]
    out = np.zeros((n, d), np.float32)
    out[:, 0::2], out[:, 1::2] = np.sin(pos * freq), np.cos(pos * freq)[:, : d // 2]
    return out


class _VGTBlock(nn.Module):
    """Pre-LN masked self-attention + (Mix-)FFN on tokens (B, T*n, d); ``grid`` = (T, gh, gw)."""

    cfg: VGTConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, grid: tuple[int, int, int]) -> jax.Array:
        c, d = self.cfg, x.shape[-1]
        h = nn.LayerNorm(name="norm1")(x)
        x = x + Attention(c.heads, d // c.heads, d, name="attn")(h, None, mask)
        h = nn.Dense(c.mlp_ratio * d, name="fc1")(nn.LayerNorm(name="norm2")(x))
        if c.variant == "hyper":
            b, (t, gh, gw) = x.shape[0], grid
            g = h.reshape(b * t, gh, gw, h.shape[-1])
            g = nn.Conv(h.shape[-1], (3, 3), padding=1, feature_group_count=h.shape[-1], name="dwconv")(g)
            h = h + g.reshape(h.shape)
        return x + nn.Dense(d, name="fc2")(jax.nn.gelu(h))


class VGT(nn.Module):
    """The Video Generation Transformer: ``(x_t, eps_unet, t)`` -> perturbation ``delta``.

    ``x_t``, ``eps_unet`` (B, T, h, w, C), ``t`` (B,) int -> (B, T, h, w, C), |delta| < scale.
    h and w must be divisible by ``patch``.
    """

    cfg: VGTConfig

    @nn.compact
    def __call__(self, x_t: jax.Array, eps: jax.Array, t: jax.Array) -> jax.Array:
        c = self.cfg
        b, frames, h, w, ch = x_t.shape
        p = c.patch
        if h % p or w % p:
            raise InputError(f"latent size {h}x{w} is not divisible by the VGT patch {p}")
        x = jnp.concatenate([x_t, eps], -1).reshape(b * frames, h, w, 2 * ch)
        if c.variant == "hyper":
            x = jax.nn.gelu(nn.Conv(c.dim, (3, 3), padding=1, name="stem")(x))
        x = nn.Conv(c.dim, (p, p), strides=(p, p), padding="VALID", name="patch_embed")(x)
        gh, gw = h // p, w // p
        n = gh * gw
        tok = x.reshape(b, frames * n, c.dim)
        pos = np.repeat(_sincos(frames, c.dim), n, axis=0) + np.tile(_sincos(n, c.dim), (frames, 1))
        temb = nn.Dense(c.dim, name="time_out")(nn.silu(nn.Dense(c.dim, name="time_in")(timestep_embedding(t, c.dim))))
        tok = tok + jnp.asarray(pos)[None] + temb[:, None]
        fidx = np.repeat(np.arange(frames), n)
        mask = jnp.asarray(fidx[:, None] >= fidx[None, :])
        for k in range(c.depth):
            tok = _VGTBlock(c, name=f"blocks_{k}")(tok, mask, (frames, gh, gw))
        out = nn.Dense(p * p * ch, kernel_init=nn.initializers.zeros, name="head")(nn.LayerNorm(name="norm_out")(tok))
        out = out.reshape(b, frames, gh, gw, p, p, ch).transpose(0, 1, 2, 4, 3, 5, 6).reshape(b, frames, h, w, ch)
        return c.scale * jnp.tanh(out)


class FrameDiscriminator(nn.Module):
    """1x1-conv discriminator on consecutive latent-frame pairs: (B, T, h, w, C) -> logits (B, T-1, h, w)."""

    channels: int = 64

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        if z.shape[1] < 2:
            raise InputError("the frame discriminator needs at least 2 frames")
        pairs = jnp.concatenate([z[:, :-1], z[:, 1:]], axis=-1)
        shp = pairs.shape
        h = pairs.reshape((-1,) + shp[2:])
        h = jax.nn.leaky_relu(nn.Conv(self.channels, (1, 1), name="conv_0")(h), 0.2)
        h = jax.nn.leaky_relu(nn.Conv(self.channels, (1, 1), name="conv_1")(h), 0.2)
        return nn.Conv(1, (1, 1), name="conv_2")(h)[..., 0].reshape(shp[:-1])


# ----------------------------------------------------------------------------- the model
@dataclasses.dataclass(frozen=True)
class APLA:
    """The modules of a :class:`APLAConfig`; params are a dict ``{"unet", "vae", "text", "vgt"?, "disc"}``
    of plain Flax param trees (``vgt`` absent for ``variant='none'``)."""

    cfg: APLAConfig

    @property
    def unet(self) -> VideoUNet:
        return VideoUNet(self.cfg.unet, True, self.cfg.frame_attention)

    @property
    def vae(self) -> AutoencoderKL:
        return AutoencoderKL(self.cfg.vae)

    @property
    def text(self) -> CLIPTextEncoder:
        return CLIPTextEncoder(self.cfg.text)

    @property
    def vgt(self) -> VGT | None:
        return None if self.cfg.vgt.variant == "none" else VGT(self.cfg.vgt)

    @property
    def disc(self) -> FrameDiscriminator:
        return FrameDiscriminator(self.cfg.disc_channels)

    def init(self, seed: int, frames: int, size: tuple[int, int]) -> dict[str, Any]:
        """Random params (:func:`numpy_init`) for videos of ``frames`` frames of ``size`` = (H, W) pixels."""
        return numpy_init(self.shapes(frames, size), seed)

    def shapes(self, frames: int, size: tuple[int, int]) -> dict[str, Any]:
        """The params' ``jax.ShapeDtypeStruct`` tree (no computation) for ``frames`` x ``size`` videos."""
        f = self.cfg.vae.factor
        m = f * 2 ** (len(self.cfg.unet.block_out_channels) - 1) * (self.cfg.vgt.patch if self.vgt is not None else 1)
        if size[0] % m or size[1] % m:
            raise InputError(f"frame size {size[0]}x{size[1]} must be divisible by {m} (VAE x UNet x VGT-patch down-sampling)")
        h, w = size[0] // f, size[1] // f
        lat = jnp.zeros((1, frames, h, w, self.cfg.unet.in_channels))
        ctx = jnp.zeros((1, self.cfg.text.max_position_embeddings, self.cfg.unet.cross_attention_dim))
        t = jnp.zeros((1,), jnp.int32)
        shapes = lambda m, *a: jax.eval_shape(m.init, jax.random.key(0), *a)["params"]  # noqa: E731
        p = {
            "unet": shapes(self.unet, lat, t, ctx),
            "vae": shapes(self.vae, jnp.zeros((1, size[0], size[1], self.cfg.vae.in_channels))),
            "text": shapes(self.text, jnp.zeros((1, self.cfg.text.max_position_embeddings), jnp.int32)),
            "disc": shapes(self.disc, jnp.zeros((1, 2, h, w, self.cfg.unet.out_channels))),
        }
        if self.vgt is not None:
            p["vgt"] = shapes(self.vgt, lat, lat, t)
        return p

    def encode_text(self, params: dict[str, Any], ids: jax.Array) -> jax.Array:
        """Token ids (B, L) -> text states (B, L, hidden) (jitted)."""
        return _jitted(self, "text")(params["text"], jnp.asarray(ids, jnp.int32))

    def encode(self, params: dict[str, Any], video: jax.Array) -> jax.Array:
        """Frames (B, T, H, W, 3) on [0, 1] -> scaled latents (B, T, H/f, W/f, C) (jitted)."""
        return _jitted(self, "encode")(params["vae"], jnp.asarray(video, jnp.float32))

    def decode(self, params: dict[str, Any], z: jax.Array) -> jax.Array:
        """Scaled latents (B, T, h, w, C) -> frames (B, T, h f, w f, 3) on [0, 1] (jitted)."""
        return _jitted(self, "decode")(params["vae"], jnp.asarray(z, jnp.float32))

    def eps(self, params: dict[str, Any], x_t: jax.Array, t: jax.Array, ctx: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(eps, delta): ``eps = eps_unet + delta`` (delta = 0 without VGT); x_t (B, T, h, w, C), t (B,), ctx (B, L, D)."""
        e = self.unet.apply({"params": params["unet"]}, x_t, t, ctx)
        if self.vgt is None:
            return e, jnp.zeros_like(e)
        d = self.vgt.apply({"params": params["vgt"]}, x_t, e, t)
        return e + d, d


ZERO_INIT = (("attn_temp", "to_out_0"), ("vgt", "head"))
"""Path fragments of the leaves that start at zero: the temporal output projections and the VGT head."""


def numpy_init(shapes: Any, seed: int) -> Any:
    """Params for a tree of shapes, drawn with NumPy (fast; no XLA compile of Flax's initialisers).

    ``kernel``: N(0, 1 / fan_in) with fan_in = product of all but the last axis (LeCun normal,
    untruncated); ``embedding``: N(0, 0.02^2) (CLIP's); ``scale``: 1; ``bias``: 0; leaves under
    :data:`ZERO_INIT` paths: 0. Each leaf has its own stream, seeded by ``(seed, crc32(path))``,
    so a leaf's value does not depend on the rest of the tree.
    """
    import zlib

    def leaf(path: Any, x: Any) -> jax.Array:
        keys = tuple(str(getattr(k, "key", k)) for k in path)
        shape, name = tuple(x.shape), keys[-1]
        if any(all(f in keys for f in frag) for frag in ZERO_INIT) or name == "bias":
            return jnp.zeros(shape, jnp.float32)
        if name == "scale":
            return jnp.ones(shape, jnp.float32)
        rs = np.random.default_rng([int(seed), zlib.crc32("/".join(keys).encode())])
        std = 0.02 if name == "embedding" else 1.0 / math.sqrt(max(int(np.prod(shape[:-1])), 1))
        return jnp.asarray(rs.standard_normal(shape, np.float32) * np.float32(std))

    return jax.tree_util.tree_map_with_path(leaf, shapes)


@functools.lru_cache(maxsize=16)
def _jitted(model: APLA, what: str) -> Any:
    """One jitted function per (model, part): the text encoder, VAE encode or VAE decode."""
    if what == "text":
        return jax.jit(lambda p, ids: model.text.apply({"params": p}, ids))
    if what == "encode":
        return jax.jit(lambda p, v: encode_video(model.vae, p, v))
    return jax.jit(lambda p, z: decode_video(model.vae, p, z))


# ----------------------------------------------------------------------------- losses
def hyper_loss(pred: jax.Array, target: jax.Array, cfg: APLAConfig) -> jax.Array:
    """``mse_weight * mean((pred - target)^2) + l1_weight * mean(|pred - target|)`` (scalar)."""
    err = pred - target
    return cfg.mse_weight * jnp.mean(jnp.square(err)) + cfg.l1_weight * jnp.mean(jnp.abs(err))


def d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Non-saturating GAN discriminator loss ``mean softplus(-real) + mean softplus(fake)``."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def g_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating generator loss ``mean softplus(-fake)``."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


# ----------------------------------------------------------------------------- sampling
@functools.lru_cache(maxsize=32)
def apply_fn(cfg: APLAConfig, guidance: float = 1.0) -> diffusion.ApplyFn:
    """The eps ``apply_fn(params, x_t, t, cond)`` of :mod:`~pansharp_jax.generative.diffusion` (cached:
    one function object per (cfg, guidance), so samplers compile once). ``cond`` is the text
    states (B, L, D), or (B, 2, L, D) = (empty prompt, prompt) when ``guidance != 1``:
    ``eps = eps_u + guidance (eps_c - eps_u)``."""
    model = APLA(cfg)

    def fn(params: Any, x: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        if guidance == 1.0:
            return model.eps(params, x, t, cond)[0]
        b = x.shape[0]
        e = model.eps(params, jnp.concatenate([x, x]), jnp.concatenate([t, t]), jnp.concatenate([cond[:, 0], cond[:, 1]]))[0]
        return e[:b] + guidance * (e[b:] - e[:b])

    return fn


def sample_latents(cfg: APLAConfig, params: dict[str, Any], cond: jax.Array, rng: jax.Array, *, frames: int,
                   latent_hw: tuple[int, int], samples: int = 1, steps: int = 20, guidance: float = 1.0,
                   eta: float = 0.0) -> jax.Array:  # fmt: skip
    """``samples`` latent videos (S, T, h, w, C) by DDIM with the shared vmapped sampler.

    ``cond`` (L, D) text states, or (2, L, D) = (empty, prompt) for guidance; ``rng`` a JAX key.
    """
    c = cond[None]
    shape = (1, int(frames), int(latent_hw[0]), int(latent_hw[1]), cfg.unet.in_channels)
    out = diffusion.sample_many(apply_fn(cfg, float(guidance)), params, c, rng, schedule(cfg), shape=shape,
                                samples=int(samples), steps=int(steps), sampler="ddim", eta=float(eta), return_samples=True)  # fmt: skip
    return out[2][:, 0]


# ----------------------------------------------------------------------------- metrics
@functools.lru_cache(maxsize=1)
def _feature_weights() -> list[np.ndarray]:
    rs = np.random.default_rng(0)
    chans = [3, 16, 32, 64]
    return [(rs.standard_normal((3, 3, a, b)) * math.sqrt(2.0 / (9 * a))).astype(np.float32) for a, b in zip(chans, chans[1:])]


def conv_features(frames: Any) -> np.ndarray:
    """The fixed random conv embedding of the FCI stand-in: (N, H, W, 3) on [0, 1] -> (N, F)."""
    x = jnp.asarray(frames, jnp.float32) - 0.5
    for w in _feature_weights():
        x = jax.nn.relu(jax.lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    return np.asarray(x).reshape(x.shape[0], -1)


def _mean_cos(f: np.ndarray) -> float:
    a, b = f[:-1].astype(np.float64), f[1:].astype(np.float64)
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return float(cos.mean())


def frame_consistency(video: Any) -> dict[str, float]:
    """FCI stand-in (module docstring) of one video (T, H, W, 3) on [0, 1], T >= 2: ``fci_pix``, ``fci_conv`` in [-1, 1]."""
    v = np.asarray(video, np.float32)
    if v.ndim != 4 or v.shape[0] < 2:
        raise InputError(f"frame consistency needs a video (T >= 2, H, W, 3), got shape {v.shape}")
    return {"fci_pix": _mean_cos(v.reshape(v.shape[0], -1) - 0.5), "fci_conv": _mean_cos(conv_features(v))}


def video_psnr(a: Any, b: Any) -> float:
    """PSNR (dB) of two videos on [0, 1] (peak 1), over all frames and pixels."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


__all__ = ["VGTConfig", "APLAConfig", "APLA", "VGT", "FrameDiscriminator", "hyper_loss", "d_loss", "g_loss", "apply_fn",
           "sample_latents", "schedule", "frame_consistency", "conv_features", "video_psnr", "json_safe", "VGT_VARIANTS",
           "numpy_init", "ZERO_INIT"]  # fmt: skip

"""The text-conditioned latent UNet of Stable Diffusion, inflated to video (Tune-A-Video style).

Parameter names follow diffusers' ``UNet2DConditionModel`` with ``"name.<i>"`` written
``"name_<i>"`` (``down_blocks_0/attentions_0/transformer_blocks_0/attn1/to_q``), so a diffusers
state dict maps onto it key by key (:mod:`~pansharp_jax.generative.apla_load`). Supported
blocks: ``CrossAttnDownBlock2D``, ``DownBlock2D``, ``UNetMidBlock2DCrossAttn``,
``CrossAttnUpBlock2D``, ``UpBlock2D``; ``proj_in``/``proj_out`` as 1x1 convolutions (SD 1.x,
``use_linear_projection=False``) or linear layers (SD 2.x).

Inflation to video (the choice of Tune-A-Video, Wu et al. 2023): inputs are NTHWC latents
(B, T, h, w, C); every 2-D layer (convolutions, group norms, spatial and cross attention, the
feed-forward) runs on the frames folded into the batch (B*T, h, w, C), so it keeps the image
model's weights unchanged. Each transformer block gains, after its feed-forward, a residual
temporal self-attention over the T frames at every pixel (``norm_temp`` LayerNorm,
``attn_temp``), whose output projection ``attn_temp/to_out_0`` is initialised to zero: the
inflated model starts exactly equal to the image model applied frame by frame. Optionally
(``frame_attention='sparse_causal'``) the spatial self-attention ``attn1`` of frame t attends
to the tokens of frames 0 and t-1 (Tune-A-Video's sparse-causal attention; it changes the
output of the unmodified image model, so the default is ``'self'``). No positional encoding
over time is added (as Tune-A-Video).

Shared building blocks (:class:`Attention`, :class:`Resnet`) are reused by the VAE.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pansharp_jax.errors import InputError
from pansharp_jax.nn.unet import timestep_embedding

DOWN_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")


def _tuple(x: Any) -> Any:
    return tuple(_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """The fields of a diffusers ``unet/config.json`` this UNet uses (defaults: SD 1.5)."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    attention_head_dim: Any = 8
    num_attention_heads: Any = None
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    use_linear_projection: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    sample_size: int = 64
    transformer_layers_per_block: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        """From a diffusers config dict (unknown keys ignored; lists become tuples)."""
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: _tuple(v) for k, v in d.items() if k in names})
        for t in cfg.down_block_types:
            if t not in DOWN_TYPES:
                raise InputError(f"unsupported UNet down block {t!r}: use {', '.join(DOWN_TYPES)}")
        for t in cfg.up_block_types:
            if t not in UP_TYPES:
                raise InputError(f"unsupported UNet up block {t!r}: use {', '.join(UP_TYPES)}")
        if not isinstance(cfg.transformer_layers_per_block, int):
            raise InputError("transformer_layers_per_block must be one integer here")
        return cfg

    def heads(self) -> tuple[int, ...]:
        """Attention heads per down block (diffusers: ``num_attention_heads or attention_head_dim``)."""
        h = self.num_attention_heads if self.num_attention_heads is not None else self.attention_head_dim
        return tuple(h) if isinstance(h, tuple) else (int(h),) * len(self.down_block_types)


def _conv(ch: int, name: str, k: int = 3, stride: int = 1, pad: Any = 1, init: Any = None) -> nn.Conv:
    kw = {"kernel_init": init, "bias_init": nn.initializers.zeros} if init is not None else {}
    pad = ((pad, pad), (pad, pad)) if isinstance(pad, int) else pad
    return nn.Conv(ch, (k, k), strides=(stride, stride), padding=pad, name=name, **kw)


class Attention(nn.Module):
    """Multi-head attention, diffusers' ``Attention`` (``to_q``, ``to_k``, ``to_v``, ``to_out_0``).

    ``x`` (N, Lq, C), ``ctx`` (N, Lk, D) or None (self-attention), ``mask`` (Lq, Lk) bool or
    None -> (N, Lq, out_dim).
    ``zero_out`` initialises ``to_out_0`` to zero (the temporal layers).
    """

    heads: int
    dim_head: int
    out_dim: int
    qkv_bias: bool = False
    zero_out: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, ctx: jax.Array | None = None, mask: jax.Array | None = None) -> jax.Array:
        ctx = x if ctx is None else ctx
        inner = self.heads * self.dim_head
        q = nn.Dense(inner, use_bias=self.qkv_bias, name="to_q")(x)
        k = nn.Dense(inner, use_bias=self.qkv_bias, name="to_k")(ctx)
        v = nn.Dense(inner, use_bias=self.qkv_bias, name="to_v")(ctx)
        split = lambda a: a.reshape(a.shape[0], a.shape[1], self.heads, self.dim_head)  # noqa: E731
        w = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(k)) / math.sqrt(self.dim_head)
        if mask is not None:  # (Lq, Lk) bool, True = attend
            w = jnp.where(mask, w, jnp.finfo(w.dtype).min)
        o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(w, axis=-1), split(v)).reshape(x.shape[0], x.shape[1], inner)
        init = {"kernel_init": nn.initializers.zeros} if self.zero_out else {}
        return nn.Dense(self.out_dim, name="to_out_0", **init)(o)


class Resnet(nn.Module):
    """diffusers' ``ResnetBlock2D``: GN-SiLU-conv, + time projection, GN-SiLU-conv, 1x1 shortcut.

    ``x`` (N, H, W, Cin), ``temb`` (N, E) or None -> (N, H, W, out).
    """

    out: int
    groups: int
    eps: float

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        h = _conv(self.out, "conv1")(nn.silu(nn.GroupNorm(self.groups, epsilon=self.eps, name="norm1")(x)))
        if temb is not None:
            h = h + nn.Dense(self.out, name="time_emb_proj")(nn.silu(temb))[:, None, None, :]
        h = _conv(self.out, "conv2")(nn.silu(nn.GroupNorm(self.groups, epsilon=self.eps, name="norm2")(h)))
        if x.shape[-1] != self.out:
            x = _conv(self.out, "conv_shortcut", k=1, pad=0)(x)
        return x + h


class GEGLU(nn.Module):
    """``proj`` to 2 x inner, ``hidden * gelu(gate)`` (exact GELU)."""

    inner: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h, gate = jnp.split(nn.Dense(2 * self.inner, name="proj")(x), 2, axis=-1)
        return h * jax.nn.gelu(gate, approximate=False)


class FeedForward(nn.Module):
    """``net_0`` (GEGLU, 4x) then ``net_2`` (linear back to ``dim``)."""

    dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.dim, name="net_2")(GEGLU(4 * self.dim, name="net_0")(x))


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention, GEGLU feed-forward (pre-LN, residual), then the temporal
    attention of the inflation (``norm_temp``, ``attn_temp``; module docstring).

    ``x`` (B*T, L, C), ``ctx`` (B*T, Lt, D) -> (B*T, L, C); ``frames`` = T.
    """

    heads: int
    dim_head: int
    frames: int
    temporal: bool = True
    frame_attention: str = "self"

    @nn.compact
    def __call__(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        c = x.shape[-1]
        h = nn.LayerNorm(epsilon=1e-5, name="norm1")(x)
        kv = None
        if self.frame_attention == "sparse_causal" and self.frames > 1:
            n, l_ = x.shape[0] // self.frames, x.shape[1]
            v = h.reshape(n, self.frames, l_, c)
            prev = jnp.concatenate([v[:, :1], v[:, :-1]], axis=1)
            kv = jnp.concatenate([jnp.broadcast_to(v[:, :1], v.shape), prev], axis=2).reshape(n * self.frames, 2 * l_, c)
        x = x + Attention(self.heads, self.dim_head, c, name="attn1")(h, kv)
        x = x + Attention(self.heads, self.dim_head, c, name="attn2")(nn.LayerNorm(epsilon=1e-5, name="norm2")(x), ctx)
        x = x + FeedForward(c, name="ff")(nn.LayerNorm(epsilon=1e-5, name="norm3")(x))
        if self.temporal:
            n, l_ = x.shape[0] // self.frames, x.shape[1]
            xt = x.reshape(n, self.frames, l_, c).transpose(0, 2, 1, 3).reshape(n * l_, self.frames, c)
            ht = Attention(self.heads, self.dim_head, c, zero_out=True, name="attn_temp")(
                nn.LayerNorm(epsilon=1e-5, name="norm_temp")(xt)
            )
            x = x + ht.reshape(n, l_, self.frames, c).transpose(0, 2, 1, 3).reshape(x.shape)
        return x


class Transformer2D(nn.Module):
    """diffusers' ``Transformer2DModel``: GN, ``proj_in`` (1x1 conv or linear), blocks, ``proj_out``, + input.

    ``x`` (B*T, H, W, C), ``ctx`` (B*T, Lt, D) -> same shape as ``x``.
    """

    heads: int
    groups: int
    linear: bool
    frames: int
    layers: int = 1
    temporal: bool = True
    frame_attention: str = "self"

    @nn.compact
    def __call__(self, x: jax.Array, ctx: jax.Array) -> jax.Array:
        n, hh, ww, c = x.shape
        h = nn.GroupNorm(self.groups, epsilon=1e-6, name="norm")(x)
        if self.linear:
            h = nn.Dense(c, name="proj_in")(h.reshape(n, hh * ww, c))
        else:
            h = _conv(c, "proj_in", k=1, pad=0)(h).reshape(n, hh * ww, c)
        for k in range(self.layers):
            h = BasicTransformerBlock(self.heads, c // self.heads, self.frames, self.temporal, self.frame_attention,
                                      name=f"transformer_blocks_{k}")(h, ctx)  # fmt: skip
        if self.linear:
            h = nn.Dense(c, name="proj_out")(h).reshape(n, hh, ww, c)
        else:
            h = _conv(c, "proj_out", k=1, pad=0)(h.reshape(n, hh, ww, c))
        return h + x


class _Sampler(nn.Module):
    """``conv`` of a down- (stride 2, pad 1) or up-sampler (nearest x2 first)."""

    ch: int
    up: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.up:
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
            return _conv(self.ch, "conv")(x)
        return _conv(self.ch, "conv", stride=2)(x)


class _Block(nn.Module):
    """One down, mid or up block (``resnets_j``, ``attentions_j``, ``downsamplers_0``/``upsamplers_0``)."""

    cfg: UNetConfig
    kind: str  # 'down' | 'mid' | 'up'
    out: int
    heads: int
    attn: bool
    sample: bool
    frames: int
    temporal: bool
    frame_attention: str
    n_res: int

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array, ctx: jax.Array, skips: list[jax.Array] | None = None) -> Any:
        cfg, outs = self.cfg, []
        mk_t = lambda j: Transformer2D(self.heads, cfg.norm_num_groups, cfg.use_linear_projection, self.frames,  # noqa: E731
                                       cfg.transformer_layers_per_block, self.temporal, self.frame_attention, name=f"attentions_{j}")  # fmt: skip
        if self.kind == "mid":
            x = Resnet(self.out, cfg.norm_num_groups, cfg.norm_eps, name="resnets_0")(x, temb)
            x = mk_t(0)(x, ctx)
            return Resnet(self.out, cfg.norm_num_groups, cfg.norm_eps, name="resnets_1")(x, temb)
        for j in range(self.n_res):
            if self.kind == "up":
                x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = Resnet(self.out, cfg.norm_num_groups, cfg.norm_eps, name=f"resnets_{j}")(x, temb)
            if self.attn:
                x = mk_t(j)(x, ctx)
            outs.append(x)
        if self.sample:
            x = _Sampler(self.out, self.kind == "up", name=("upsamplers_0" if self.kind == "up" else "downsamplers_0"))(x)
            outs.append(x)
        return x if self.kind == "up" else (x, outs)


class VideoUNet(nn.Module):
    """The inflated ``UNet2DConditionModel`` (eps prediction).

    Call: ``x`` (B, T, h, w, in_channels) latents, ``t`` (B,) int timesteps in [0, 1000),
    ``ctx`` (B, Lt, cross_attention_dim) text states -> (B, T, h, w, out_channels). h and w
    must be divisible by ``2 ** (len(block_out_channels) - 1)``. ``temporal=False`` is the
    image model run frame by frame (no temporal layers, no parameters for them).
    """

    cfg: UNetConfig
    temporal: bool = True
    frame_attention: str = "self"

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, ctx: jax.Array) -> jax.Array:
        cfg = self.cfg
        if self.frame_attention not in ("self", "sparse_causal"):
            raise InputError(f"frame_attention must be 'self' or 'sparse_causal', got {self.frame_attention!r}")
        b, frames = x.shape[:2]
        x = x.reshape((b * frames,) + x.shape[2:]).astype(jnp.float32)
        ctx = jnp.repeat(jnp.asarray(ctx, jnp.float32), frames, axis=0)
        c0 = cfg.block_out_channels[0]
        temb = _TimeEmbedding(4 * c0, name="time_embedding")(
            timestep_embedding(jnp.broadcast_to(t, (b,)), c0, flip_sin_to_cos=cfg.flip_sin_to_cos, shift=cfg.freq_shift)
        )
        temb = jnp.repeat(temb, frames, axis=0)
        heads = cfg.heads()
        common = dict(cfg=cfg, frames=frames, temporal=self.temporal, frame_attention=self.frame_attention)
        h = _conv(c0, "conv_in")(x)
        skips = [h]
        n = len(cfg.block_out_channels)
        for i, kind in enumerate(cfg.down_block_types):
            h, outs = _Block(kind="down", out=cfg.block_out_channels[i], heads=heads[i], attn=kind.startswith("CrossAttn"),
                             sample=i < n - 1, n_res=cfg.layers_per_block, name=f"down_blocks_{i}", **common)(h, temb, ctx)  # fmt: skip
            skips += outs
        h = _Block(kind="mid", out=cfg.block_out_channels[-1], heads=heads[-1], attn=True, sample=False, n_res=1,
                   name="mid_block", **common)(h, temb, ctx)  # fmt: skip
        rev, rheads = cfg.block_out_channels[::-1], heads[::-1]
        for i, kind in enumerate(cfg.up_block_types):
            h = _Block(kind="up", out=rev[i], heads=rheads[i], attn=kind.startswith("CrossAttn"), sample=i < n - 1,
                       n_res=cfg.layers_per_block + 1, name=f"up_blocks_{i}", **common)(h, temb, ctx, skips)  # fmt: skip
        h = nn.silu(nn.GroupNorm(cfg.norm_num_groups, epsilon=cfg.norm_eps, name="conv_norm_out")(h))
        h = _conv(cfg.out_channels, "conv_out")(h)
        return h.reshape((b, frames) + h.shape[1:])


class _TimeEmbedding(nn.Module):
    """diffusers' ``TimestepEmbedding``: ``linear_1``, SiLU, ``linear_2``."""

    dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.dim, name="linear_2")(nn.silu(nn.Dense(self.dim, name="linear_1")(x)))


__all__ = ["UNetConfig", "VideoUNet", "Attention", "Resnet", "timestep_embedding", "DOWN_TYPES", "UP_TYPES"]

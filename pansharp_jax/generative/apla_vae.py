"""Stable Diffusion's VAE (diffusers ``AutoencoderKL``) for frames and latent videos.

Parameter names follow diffusers (``encoder/down_blocks_0/resnets_0/conv1``,
``quant_conv``, ``post_quant_conv``, ``decoder/up_blocks_0/upsamplers_0/conv``), with
``"name.<i>"`` written ``"name_<i>"``. Blocks: ``DownEncoderBlock2D`` (resnets without a time
input; the downsampler pads right/bottom by one and convolves 3x3 with stride 2, padding 0),
a mid block (resnet, one-head self-attention with ``group_norm`` and biased projections,
resnet), ``UpDecoderBlock2D`` (``layers_per_block + 1`` resnets, nearest x2 + 3x3 conv).
Every group norm uses eps 1e-6. Images are on [-1, 1]; latents are the posterior mean times
``scaling_factor`` (0.18215 for SD 1.x), as the SD pipelines use them. Videos fold frames into
the batch: :func:`encode_video` (B, T, H, W, 3) -> (B, T, H/f, W/f, latent_channels) with
``f = 2 ** (len(block_out_channels) - 1)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pansharp_jax.generative.apla_unet import Resnet, _conv, _tuple


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The fields of a diffusers ``vae/config.json`` used here (defaults: SD 1.5)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        """From a diffusers config dict (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _tuple(v) for k, v in d.items() if k in names})

    @property
    def factor(self) -> int:
        """Spatial down-sampling factor of the latents."""
        return 2 ** (len(self.block_out_channels) - 1)


class _Blk(nn.Module):
    """A ``DownEncoderBlock2D`` or ``UpDecoderBlock2D``."""

    ch: int
    groups: int
    n_res: int
    sample: bool
    up: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.n_res):
            x = Resnet(self.ch, self.groups, 1e-6, name=f"resnets_{j}")(x)
        if self.sample and self.up:
            x = _Up(self.ch, name="upsamplers_0")(x)
        elif self.sample:
            x = _Down(self.ch, name="downsamplers_0")(x)
        return x


class _Down(nn.Module):
    ch: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _conv(self.ch, "conv", stride=2, pad=((0, 1), (0, 1)))(x)


class _Up(nn.Module):
    ch: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _conv(self.ch, "conv")(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


class Encoder(nn.Module):
    """``encoder``: images (N, H, W, 3) on [-1, 1] -> moments (N, H/f, W/f, 2 * latent_channels)."""

    cfg: VAEConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c, g = self.cfg, self.cfg.norm_num_groups
        h = _conv(c.block_out_channels[0], "conv_in")(x)
        n = len(c.block_out_channels)
        for i, ch in enumerate(c.block_out_channels):
            h = _Blk(ch, g, c.layers_per_block, i < n - 1, False, name=f"down_blocks_{i}")(h)
        h = MidBlock(c.block_out_channels[-1], g, name="mid_block")(h)
        h = nn.silu(nn.GroupNorm(g, epsilon=1e-6, name="conv_norm_out")(h))
        return _conv(2 * c.latent_channels, "conv_out")(h)


class Decoder(nn.Module):
    """``decoder``: latents (N, h, w, latent_channels) (unscaled) -> images (N, h f, w f, 3)."""

    cfg: VAEConfig

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        c, g = self.cfg, self.cfg.norm_num_groups
        rev = c.block_out_channels[::-1]
        h = _conv(rev[0], "conv_in")(z)
        h = MidBlock(rev[0], g, name="mid_block")(h)
        for i, ch in enumerate(rev):
            h = _Blk(ch, g, c.layers_per_block + 1, i < len(rev) - 1, True, name=f"up_blocks_{i}")(h)
        h = nn.silu(nn.GroupNorm(g, epsilon=1e-6, name="conv_norm_out")(h))
        return _conv(c.out_channels, "conv_out")(h)


class MidBlock(nn.Module):
    """``mid_block``: ``resnets_0``, ``attentions_0`` (group_norm + one-head attention), ``resnets_1``."""

    ch: int
    groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Resnet(self.ch, self.groups, 1e-6, name="resnets_0")(x)
        x = VAEAttention(self.groups, name="attentions_0")(x)
        return Resnet(self.ch, self.groups, 1e-6, name="resnets_1")(x)


class VAEAttention(nn.Module):
    """diffusers' VAE ``Attention`` with ``group_norm``: params ``group_norm``, ``to_q``, ``to_k``,
    ``to_v``, ``to_out_0`` (all biased); one head of width C; residual. (N, H, W, C) -> same."""

    groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        y = nn.GroupNorm(self.groups, epsilon=1e-6, name="group_norm")(x).reshape(n, h * w, c)
        q = nn.Dense(c, name="to_q")(y)
        k = nn.Dense(c, name="to_k")(y)
        v = nn.Dense(c, name="to_v")(y)
        a = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / jnp.sqrt(jnp.float32(c)), axis=-1)
        return x + nn.Dense(c, name="to_out_0")(jnp.einsum("bqk,bkc->bqc", a, v)).reshape(x.shape)


class AutoencoderKL(nn.Module):
    """diffusers' ``AutoencoderKL`` (``encoder``, ``quant_conv``, ``post_quant_conv``, ``decoder``).

    ``__call__(x)`` -> (reconstruction, mean, logvar) for images (N, H, W, 3) on [-1, 1] (used
    for init and fitting); :meth:`encode` -> (mean, logvar) (N, H/f, W/f, L) unscaled;
    :meth:`decode` unscaled latents -> images.
    """

    cfg: VAEConfig

    def setup(self) -> None:
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)
        self.quant_conv = nn.Conv(2 * self.cfg.latent_channels, (1, 1), name="quant_conv")
        self.post_quant_conv = nn.Conv(self.cfg.latent_channels, (1, 1), name="post_quant_conv")

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, logvar = jnp.split(self.quant_conv(self.encoder(x)), 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(self.post_quant_conv(z))

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        mean, logvar = self.encode(x)
        return self.decode(mean), mean, logvar


def encode_video(vae: AutoencoderKL, params: Any, video: jax.Array) -> jax.Array:
    """Frames (B, T, H, W, 3) on [0, 1] -> scaled latent video (B, T, H/f, W/f, L) (posterior mean)."""
    b, t = video.shape[:2]
    x = 2.0 * jnp.asarray(video, jnp.float32).reshape((b * t,) + video.shape[2:]) - 1.0
    mean, _ = vae.apply({"params": params}, x, method=AutoencoderKL.encode)
    return (mean * vae.cfg.scaling_factor).reshape((b, t) + mean.shape[1:])


def decode_video(vae: AutoencoderKL, params: Any, z: jax.Array) -> jax.Array:
    """Scaled latent video (B, T, h, w, L) -> frames (B, T, h f, w f, 3) on [0, 1] (clipped)."""
    b, t = z.shape[:2]
    x = vae.apply({"params": params}, z.reshape((b * t,) + z.shape[2:]) / vae.cfg.scaling_factor, method=AutoencoderKL.decode)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0).reshape((b, t) + x.shape[1:])


__all__ = ["VAEConfig", "AutoencoderKL", "Encoder", "Decoder", "encode_video", "decode_video"]

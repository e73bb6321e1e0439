"""A conditional UNet denoiser for the diffusion core (:mod:`pansharp_jax.generative.diffusion`).

``UNet(out_channels, ...)(x_t, t, cond) -> prediction``:

* ``x_t`` (B, H, W, C) float32, the noisy variable; ``cond`` (B, H, W, Cc) or None, concatenated
  with ``x_t`` on the channel axis at the input (for pan-sharpening ``concat([lms, pan])``);
  ``t`` (B,) or scalar, int or float timestep, embedded as it is (no rescaling).
* time embedding: sinusoidal(``base``) -> Dense(4 base) -> SiLU -> Dense(4 base);
* ``len(mults)`` levels of ``blocks`` residual blocks (GroupNorm -> SiLU -> conv3x3, plus a
  per-channel bias from the time embedding, GroupNorm -> SiLU -> conv3x3, 1x1 skip when the
  width changes) at width ``base * mults[i]``, a stride-2 conv between levels, a middle of two
  residual blocks (with single-head self-attention between them when ``attention``, at the
  lowest resolution), then the mirrored up path (nearest x2 + conv3x3) with the down path's
  skips concatenated, and GroupNorm -> SiLU -> conv3x3 to ``out_channels``.

H and W must be multiples of ``2 ** (len(mults) - 1)``; every width must be a multiple of
``groups``. Sizes are arguments, so tests use tiny widths (``base=8``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pansharp_jax.errors import InputError


def timestep_embedding(
    t: jax.Array, dim: int, max_period: float = 10000.0, flip_sin_to_cos: bool = True, shift: float = 0.0
) -> jax.Array:
    """Sinusoidal embedding of timesteps ``t`` (B,) -> (B, dim) float32: ``[cos(t f_k), sin(t f_k)]``
    (``[sin, cos]`` when ``flip_sin_to_cos`` is False, as diffusers' ``Timesteps`` option).

    ``f_k = max_period ** (-k / (dim // 2 - shift))``, k = 0..dim//2 - 1 (a zero column is
    appended for odd ``dim``); ``shift`` is diffusers' ``downscale_freq_shift``.
    """
    half = dim // 2
    denom = half - shift if half - shift > 0 else 1.0
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / denom)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
    parts = [jnp.cos(args), jnp.sin(args)] if flip_sin_to_cos else [jnp.sin(args), jnp.cos(args)]
    return jnp.pad(jnp.concatenate(parts, axis=-1), ((0, 0), (0, dim % 2)))


def _conv(features: int, kernel: int = 3, stride: int = 1, name: str | None = None) -> nn.Conv:
    pad = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)), name=name)


class ResBlock(nn.Module):
    """GN-SiLU-conv, + Dense(SiLU(temb)) bias, GN-SiLU-conv, + (1x1) skip: (B, H, W, Cin) -> (B, H, W, features)."""

    features: int
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
        h = _conv(self.features)(nn.silu(nn.GroupNorm(num_groups=math.gcd(self.groups, x.shape[-1]))(x)))
        h = h + nn.Dense(self.features)(nn.silu(temb))[:, None, None, :]
        h = _conv(self.features)(nn.silu(nn.GroupNorm(num_groups=self.groups)(h)))
        skip = x if x.shape[-1] == self.features else _conv(self.features, 1)(x)
        return skip + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions, pre-GroupNorm, residual: (B, H, W, C) -> same."""

    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        tokens = nn.GroupNorm(num_groups=self.groups)(x).reshape(b, h * w, c)
        q, k, v = jnp.split(nn.Dense(3 * c)(tokens), 3, axis=-1)
        attn = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / math.sqrt(c), axis=-1)
        out = nn.Dense(c)(jnp.einsum("bqk,bkc->bqc", attn, v))
        return x + out.reshape(b, h, w, c)


class UNet(nn.Module):
    """The conditional UNet (module docstring): ``(x_t, t, cond) -> (B, H, W, out_channels)``.

    Attributes:
      out_channels: channels of the prediction (the bands of ``x_t``).
      base: width of the first level; level i has ``base * mults[i]``.
      mults: width multipliers, one per level (``len(mults) - 1`` down-samplings).
      blocks: residual blocks per level (down and up).
      groups: GroupNorm groups.
      attention: self-attention in the middle (lowest resolution); off by default.
    """

    out_channels: int
    base: int = 32
    mults: Sequence[int] = (1, 2, 2)
    blocks: int = 1
    groups: int = 8
    attention: bool = False

    @nn.compact
    def __call__(self, x_t: jax.Array, t: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        if x_t.ndim != 4:
            raise InputError(f"UNet input must be NHWC (B, H, W, C), got shape {x_t.shape}")
        factor = 2 ** (len(self.mults) - 1)
        if x_t.shape[1] % factor or x_t.shape[2] % factor:
            raise InputError(f"UNet input {x_t.shape[1]}x{x_t.shape[2]} is not a multiple of {factor} ({len(self.mults)} levels)")
        widths = [self.base * m for m in self.mults]
        if any(w % self.groups for w in widths):
            raise InputError(f"UNet widths {widths} must be multiples of groups={self.groups}")
        b = x_t.shape[0]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32).reshape(-1), (b,))
        temb = timestep_embedding(t, self.base)
        temb = nn.Dense(4 * self.base)(nn.silu(nn.Dense(4 * self.base)(temb)))
        h = x_t if cond is None else jnp.concatenate([x_t, cond.astype(x_t.dtype)], axis=-1)
        h = _conv(self.base)(h)

        skips = []
        for i, width in enumerate(widths):
            for _ in range(self.blocks):
                h = ResBlock(width, self.groups)(h, temb)
            skips.append(h)
            if i < len(widths) - 1:
                h = _conv(width, stride=2)(h)
        h = ResBlock(widths[-1], self.groups)(h, temb)
        if self.attention:
            h = AttentionBlock(self.groups)(h)
        h = ResBlock(widths[-1], self.groups)(h, temb)
        for i in reversed(range(len(widths))):
            if i < len(widths) - 1:
                h = jax.image.resize(h, (b, h.shape[1] * 2, h.shape[2] * 2, h.shape[3]), "nearest")
                h = _conv(widths[i])(h)
            h = jnp.concatenate([h, skips[i]], axis=-1)
            for _ in range(self.blocks):
                h = ResBlock(widths[i], self.groups)(h, temb)
        h = nn.silu(nn.GroupNorm(num_groups=self.groups)(h))
        return _conv(self.out_channels)(h)


def unet_apply_fn(module: UNet) -> Callable[[Any, jax.Array, jax.Array, jax.Array | None], jax.Array]:
    """``(params, x_t, t, cond) -> prediction``, the diffusion core's model signature, for ``module``.

    The samplers take it as a static argument: keep the returned function and pass the same
    object to every call, so that the compiled sampler is reused.
    """

    def apply_fn(params: Any, x_t: jax.Array, t: jax.Array, cond: jax.Array | None) -> jax.Array:
        return module.apply({"params": params}, x_t, t, cond)

    return apply_fn

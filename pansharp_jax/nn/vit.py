"""Vision-transformer pieces shared by the MAE prior, deep unfolding and PanAdapter.

* :func:`patchify` / :func:`unpatchify`: NHWC images <-> (N, L, p*p*C) patch tokens,
  row-major over the patch grid (einops).
* :func:`sincos_pos_embed_2d`: the fixed 2-D sine-cosine position table of MAE (He et al.
  2022): half the channels encode the row, half the column.
* :class:`EncoderBlock`: pre-LayerNorm transformer block (multi-head self-attention + GELU
  MLP, residuals); :class:`Encoder`: ``depth`` blocks as ONE ``nn.scan`` over stacked block
  params, so compile time does not grow with the depth.

Shapes: tokens (N, L, D) float32; masks and position tables are static per shape.
"""

from __future__ import annotations

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError


def patchify(x: jax.Array, patch: int) -> jax.Array:
    """(N, H, W, C) -> (N, (H/p)(W/p), p*p*C) tokens, patch grid row-major, pixels (py, px, c)."""
    n, h, w, c = x.shape
    if h % patch or w % patch:
        raise InputError(f"image {h}x{w} is not a multiple of the {patch}-pixel ViT patch")
    return einops.rearrange(x, "n (gh py) (gw px) c -> n (gh gw) (py px c)", py=patch, px=patch)


def unpatchify(tokens: jax.Array, patch: int, grid: tuple[int, int], channels: int) -> jax.Array:
    """Inverse of :func:`patchify`: (N, gh*gw, p*p*C) -> (N, gh*p, gw*p, C)."""
    gh, gw = grid
    return einops.rearrange(tokens, "n (gh gw) (py px c) -> n (gh py) (gw px) c", gh=gh, gw=gw, py=patch, px=patch, c=channels)


def sincos_pos_embed_2d(grid_h: int, grid_w: int, dim: int) -> np.ndarray:
    """(grid_h * grid_w, dim) float32 table: rows in the first half, columns in the second.

    Each half is ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 10000^(-k / (dim/4))``;
    ``dim`` must be a multiple of 4.
    """
    if dim % 4:
        raise InputError(f"sine-cosine position embeddings need a width that is a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))

    def axis(pos: np.ndarray) -> np.ndarray:
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64), indexing="ij")
    return np.concatenate([axis(rows), axis(cols)], axis=1).astype(np.float32)


class EncoderBlock(nn.Module):
    """Pre-LN block: ``x + MHSA(LN(x))`` then ``x + MLP(LN(x))``; (N, L, D) -> (N, L, D).

    Written for :class:`Encoder`'s scan: ``__call__(x, _) -> (x, None)``.
    """

    heads: int
    mlp_ratio: float = 4.0
    dtype: jnp.dtype | None = None  # None: the promoted dtype of inputs and params (float32 unless cast)

    @nn.compact
    def __call__(self, x: jax.Array, _: None = None) -> tuple[jax.Array, None]:
        d = x.shape[-1]
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype, deterministic=True)(y)  # self-attention
        x = x + y
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        y = nn.Dense(int(d * self.mlp_ratio), dtype=self.dtype)(y)
        y = nn.Dense(d, dtype=self.dtype)(nn.gelu(y))
        return x + y, None


class Encoder(nn.Module):
    """``depth`` :class:`EncoderBlock` as one ``nn.scan`` (params stacked on a leading axis) + final LN."""

    depth: int
    heads: int
    mlp_ratio: float = 4.0
    remat: bool = False
    dtype: jnp.dtype | None = None  # None: the promoted dtype of inputs and params (float32 unless cast)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
        stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True}, length=self.depth)
        x, _ = stack(self.heads, self.mlp_ratio, self.dtype, name="blocks")(x, None)
        return nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)


__all__ = ["Encoder", "EncoderBlock", "patchify", "sincos_pos_embed_2d", "unpatchify"]

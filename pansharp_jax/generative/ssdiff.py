"""SSDiff (Zhong et al. 2024): a spatial-spectral dual-branch diffusion denoiser for pan-sharpening.

Registry name ``ssdiff``. The diffusion is the core's (:mod:`pansharp_jax.generative.diffusion`):
``x0`` is the residual ``hrms - lms``, the condition ``concat([lms, pan])``, a cosine schedule
with T = 1000, the network predicts ``x0`` and is trained with an L1 loss; sampling is DDIM.

SSNet (the denoiser, ``(x_t, t, cond) -> x0^``; NHWC float32, [0, 1] data scale):

* time: ``t * 1000 / T`` -> sinusoidal(``model_channels``) -> Dense(4 mc) -> SiLU -> Dense(4 mc);
* inputs: spectral branch ``x = conv3x3([lms, x_t])``, spatial branch ``y = conv3x3([pan, x_t])``
  (each to ``dim``), each followed by a time injection ``h + b(t)``, then
  ``+ zero-conv3x3(SiLU(GroupNorm(h + b(t))))`` (b(t) = Dense(SiLU(temb)), per channel);
* a U of five levels (widths dim, 2 dim, 4 dim, 2 dim, dim at H, H/2, H/4, H/2, H). At level i
  FMIM modulates the features: the first half of x's channels times ``fmim_b[i]``, and y's
  Fourier spectrum times ``fmim_s[i]`` in the central ``2 t x 2 t`` square of the shifted
  spectrum (``t = fmim_threshold``); then ``x <- APFM(x_mod, y_mod)`` and ``y <- ResBlock(y)``.
  Down (conv2x2/2 -> LReLU -> conv1x1 to 2c -> depthwise 3x3 -> LReLU) and Up (convT2x2/2 to c/2
  -> LReLU, + skip, conv3x3 -> LReLU) modules are shared by both branches (one set of weights);
* APFM (alternating projection fusion): x, y tokens (N, d) through one shared LayerNorm; per
  head (head dim ``dim_head``) ``A_sa = softmax(Y1 Y2^T / sqrt(dh))`` (N x N, from y),
  ``A_se = softmax(X1^T X2 / sqrt(dh) / (N / dh))`` (dh x dh, from x), and
  ``x <- x + W_out((A_sa X1) * (Y1 A_se))``, then ``x <- x + FFN(LN(x))`` (hidden
  ``mlp_ratio * d``, LeakyReLU);
* spatial ResBlock: ``y + TimeInject(conv3x3(LReLU(conv3x3(y))))`` (hidden ``rb_ratio * d``);
* output: ``conv3x3(LReLU(conv3x3([x, y])))`` to C bands, plus a global skip.

L-BAF (LoRA branch-wise alternating fine-tuning): every conv / dense layer of the two branches'
own blocks (``spectral_in``, ``spectral_{0..4}``; ``spatial_in``, ``spatial_{0..4}``) is a LoRA
layer (:mod:`pansharp_jax.nn.lora`) of rank ``lora_rank``. The factors are frozen (B = 0) during
pre-training; a fine-tuning round trains only the factors of one branch (all else frozen),
starting from the previous round, and rounds alternate spatial, spectral, spatial, ...
(:func:`lbaf_frozen` gives the ``optim.frozen`` prefixes; ``configs/ssdiff_wv2_real.py``).
:func:`~pansharp_jax.nn.lora.merge_lora` folds the factors in afterwards (no extra parameters).

Choices where the paper and the official code are silent or cannot be followed (the names in
double back-quotes are fields of :func:`ssdiff_config`):

* The core's condition carries ``lms`` (not the LR MS), so the global skip is the paper's
  MS-grid conv3x3 + PixelShuffle applied to the pixel-unshuffled ``lms`` (``skip_factor`` 4).
* Normalisation in the time injection: GroupNorm (no batch statistics) instead of BatchNorm.
* The output head reads ``concat([x, y])`` (2 dim -> dim -> C), so the last spatial block is
  used; the spatial ResBlock reads the unmodulated ``y`` (FMIM feeds only the APFM).
* LeakyReLU slope ``negative_slope`` = 0.2; the four APFM projections have no bias. Kernels
  start as PyTorch's default (uniform, variance 1 / (3 fan-in)), biases at zero.
* LoRA: rank 4, alpha 4 (scale 1), on the branch blocks' conv / dense layers except the time
  injection; the APFM (including its projections of y) belongs to the spectral branch; the
  first fine-tuning round is the spatial one.
* The official inference runs patch-wise (64 x 64) through a closed binary. Here images larger
  than ``tile`` are denoised tile by tile at every sampler step (the noisy image stays whole):
  overlapping tiles (``tile_overlap`` pixels) are blended with linear-ramp weights, so APFM
  sees token counts as in training and memory stays bounded (``tile_batch`` tiles at a time;
  0 = all at once). Training inputs are never tiled.
* Parameters are drawn with JAX's ``'rbg'`` PRNG seeded from the init key (:meth:`SSDiff.init`):
  the threefry draws of ~130 initialisers take minutes of XLA compilation on a CPU.
* Fusion (``__call__``, ``pansharp fuse``) and validation (``eval_output``) are the mean of
  ``eval_samples`` DDIM (eta 0) draws with ``sample_steps`` steps (10, the official
  ``image_sample`` default), x0^ clipped to ``[-clip_x0, clip_x0]``; ``__call__`` uses the key
  ``PRNGKey(seed)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.generative import diffusion
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn.lora import TORCH_UNIFORM, LoRAConv, LoRADense, freeze_all_but_lora, lora_paths
from pansharp_jax.nn.unet import timestep_embedding

BRANCHES = ("spatial", "spectral")
LEVELS = 5


def _lrelu(x: jax.Array, slope: float) -> jax.Array:
    return jax.nn.leaky_relu(x, slope)


def _conv(
    features: int, k: int = 3, *, rank: int = 0, alpha: float | None = None, name: str | None = None, **kw: Any
) -> LoRAConv:
    p = (k - 1) // 2
    kw.setdefault("kernel_init", TORCH_UNIFORM)
    return LoRAConv(features, (k, k), padding=((p, k - 1 - p), (p, k - 1 - p)), rank=rank, alpha=alpha, name=name, **kw)


def _dense(features: int, name: str, **kw: Any) -> LoRADense:
    return LoRADense(features, name=name, kernel_init=TORCH_UNIFORM, **kw)


def pixel_unshuffle(x: jax.Array, r: int) -> jax.Array:
    """(B, H, W, C) -> (B, H/r, W/r, r*r*C): each r x r block stacked on channels (row, col, band order)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // r, w // r, r * r * c)


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
    """Inverse of :func:`pixel_unshuffle`: (B, h, w, r*r*C) -> (B, r h, r w, C)."""
    b, h, w, rc = x.shape
    c = rc // (r * r)
    return x.reshape(b, h, w, r, r, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h * r, w * r, c)


def fourier_scale(y: jax.Array, scale: float, threshold: int) -> jax.Array:
    """FMIM's spatial modulation: y (B, H, W, C) with the central ``2t x 2t`` square of its
    shifted 2-D spectrum (rows/cols ``H//2 - t .. H//2 + t - 1``, the DC included) times ``scale``;
    real part of the inverse FFT. Identity (returned as is) for ``scale == 1`` or ``t == 0``."""
    if scale == 1.0 or threshold <= 0:
        return y
    h, w = y.shape[1:3]
    mask = np.ones((h, w), np.float32)
    mask[max(h // 2 - threshold, 0) : h // 2 + threshold, max(w // 2 - threshold, 0) : w // 2 + threshold] = scale
    mask = np.fft.ifftshift(mask)  # the same square in unshifted frequency order
    f = jnp.fft.fft2(y.astype(jnp.float32), axes=(1, 2)) * jnp.asarray(mask)[None, :, :, None]
    return jnp.real(jnp.fft.ifft2(f, axes=(1, 2))).astype(y.dtype)


def channel_scale(x: jax.Array, b: float) -> jax.Array:
    """FMIM's spectral modulation: the first half of x's channels times ``b`` (B, H, W, C)."""
    if b == 1.0:
        return x
    half = x.shape[-1] // 2
    return jnp.concatenate([x[..., :half] * b, x[..., half:]], axis=-1)


class TimeInject(nn.Module):
    """``h + b(t)`` then ``+ zero-conv3x3(SiLU(GroupNorm(h + b(t))))``: (B, H, W, C), temb (B, E) -> same."""

    groups: int = 8

    @nn.compact
    def __call__(self, h: jax.Array, temb: jax.Array) -> jax.Array:
        c = h.shape[-1]
        h = h + _dense(c, "bias")(nn.silu(temb))[:, None, None, :]
        z = nn.silu(nn.GroupNorm(num_groups=math.gcd(self.groups, c), name="norm")(h))
        return h + _conv(c, kernel_init=nn.initializers.zeros_init(), name="zero_conv")(z)


class InBlock(nn.Module):
    """A branch's input: conv3x3 to ``dim`` (LoRA) and a time injection."""

    dim: int
    groups: int
    rank: int
    alpha: float | None

    @nn.compact
    def __call__(self, h: jax.Array, temb: jax.Array) -> jax.Array:
        h = _conv(self.dim, rank=self.rank, alpha=self.alpha, name="conv")(h)
        return TimeInject(self.groups, name="time")(h, temb)


class SpatialBlock(nn.Module):
    """The spatial branch's ResBlock: ``y + TimeInject(conv3x3(LReLU(conv3x3(y))))`` (LoRA convs)."""

    rb_ratio: float
    slope: float
    groups: int
    rank: int
    alpha: float | None

    @nn.compact
    def __call__(self, y: jax.Array, temb: jax.Array) -> jax.Array:
        c = y.shape[-1]
        h = _conv(max(1, int(c * self.rb_ratio)), rank=self.rank, alpha=self.alpha, name="conv1")(y)
        h = _conv(c, rank=self.rank, alpha=self.alpha, name="conv2")(_lrelu(h, self.slope))
        return y + TimeInject(self.groups, name="time")(h, temb)


class APFM(nn.Module):
    """Alternating projection fusion of spectral tokens x with spatial tokens y (module docstring).

    x, y (B, H, W, d) -> (B, H, W, d); d must be a multiple of ``dim_head``.
    """

    dim_head: int
    mlp_ratio: float
    slope: float
    rank: int
    alpha: float | None

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        b, hh, ww, d = x.shape
        if d % self.dim_head:
            raise InputError(f"APFM width {d} is not a multiple of dim_head={self.dim_head}")
        heads, dh, n = d // self.dim_head, self.dim_head, hh * ww
        lora = dict(rank=self.rank, alpha=self.alpha)
        xt, yt = x.reshape(b, n, d), y.reshape(b, n, d)
        norm = nn.LayerNorm(name="norm1")  # one LayerNorm for both token sets
        xn, yn = norm(xt), norm(yt)

        def proj(tokens: jax.Array, name: str) -> jax.Array:
            return _dense(heads * dh, name, use_bias=False, **lora)(tokens).reshape(b, n, heads, dh)

        x1, x2 = proj(xn, "se1"), proj(xn, "se2")
        y1, y2 = proj(yn, "sa1"), proj(yn, "sa2")
        out1 = jax.nn.dot_product_attention(y1, y2, x1)  # softmax(Y1 Y2^T / sqrt(dh)) X1: (B, N, h, dh)
        a_se = jnp.einsum("bnhd,bnhe->bhde", x1, x2) / math.sqrt(dh) / (n / dh)
        out2 = jnp.einsum("bnhd,bhde->bnhe", y1, jax.nn.softmax(a_se, axis=-1))
        xt = xt + _dense(d, "proj", **lora)((out1 * out2).reshape(b, n, heads * dh))
        h = _dense(max(1, int(d * self.mlp_ratio)), "fc1", **lora)(nn.LayerNorm(name="norm2")(xt))
        xt = xt + _dense(d, "fc2", **lora)(_lrelu(h, self.slope))
        return xt.reshape(b, hh, ww, d)


class Down(nn.Module):
    """conv2x2 stride 2 -> LReLU -> conv1x1 to 2c -> depthwise 3x3 -> LReLU: (B, H, W, c) -> (B, H/2, W/2, 2c)."""

    slope: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        h = _lrelu(LoRAConv(c, (2, 2), strides=(2, 2), padding="VALID", kernel_init=TORCH_UNIFORM, name="conv")(x), self.slope)
        h = _conv(2 * c, 1, name="expand")(h)
        return _lrelu(_conv(2 * c, 3, feature_group_count=2 * c, name="depthwise")(h), self.slope)


class Up(nn.Module):
    """convT2x2 stride 2 to c/2 -> LReLU, + skip, conv3x3 -> LReLU: (B, H, W, c), skip (B, 2H, 2W, c/2)."""

    slope: float

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
        c = x.shape[-1] // 2
        up = nn.ConvTranspose(c, (2, 2), strides=(2, 2), padding="VALID", kernel_init=TORCH_UNIFORM, name="convt")
        h = _lrelu(up(x), self.slope)
        return _lrelu(_conv(c, name="conv")(h + skip), self.slope)


class SSNet(nn.Module):
    """The SSDiff denoiser (module docstring): ``(x_t (B,H,W,C), t (B,), cond (B,H,W,C+1)) -> (B,H,W,C)``.

    ``cond = concat([lms, pan])``; H and W multiples of 4 and of ``skip_factor``.
    """

    dim: int = 32
    dim_head: int = 16
    model_channels: int = 128
    mlp_ratio: float = 0.5
    rb_ratio: float = 0.5
    negative_slope: float = 0.2
    groups: int = 8
    skip_factor: int = 4
    fmim: bool = True
    fmim_b: tuple[float, ...] = (1.2, 1.4, 1.6, 1.4, 1.2)
    fmim_s: tuple[float, ...] = (0.9, 0.6, 0.3, 0.6, 0.9)
    fmim_threshold: int = 1
    lora_rank: int = 4
    lora_alpha: float | None = 4.0
    T: int = 1000

    @nn.compact
    def __call__(self, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        if x_t.ndim != 4 or cond is None or cond.shape != (*x_t.shape[:3], x_t.shape[-1] + 1):
            got = f"{x_t.shape} and {getattr(cond, 'shape', None)}"
            raise InputError(f"SSNet takes x_t (B, H, W, C) and cond (B, H, W, C + 1); got {got}")
        m = math.lcm(4, int(self.skip_factor))
        if x_t.shape[1] % m or x_t.shape[2] % m:
            raise InputError(f"SSNet input {x_t.shape[1]}x{x_t.shape[2]} is not a multiple of {m}")
        if len(self.fmim_b) != LEVELS or len(self.fmim_s) != LEVELS:
            raise InputError(f"fmim_b and fmim_s need {LEVELS} values (one per level)")
        bsz, c = x_t.shape[0], x_t.shape[-1]
        lms, pan = cond[..., :c].astype(jnp.float32), cond[..., c:].astype(jnp.float32)
        lora = dict(rank=int(self.lora_rank), alpha=self.lora_alpha)
        slope = float(self.negative_slope)

        tt = jnp.broadcast_to(jnp.asarray(t, jnp.float32).reshape(-1), (bsz,)) * (1000.0 / self.T)
        e = 4 * self.model_channels
        temb = timestep_embedding(tt, self.model_channels)
        temb = _dense(e, "time_embed_1")(nn.silu(_dense(e, "time_embed_0")(temb)))

        x = InBlock(self.dim, self.groups, name="spectral_in", **lora)(jnp.concatenate([lms, x_t], -1), temb)
        y = InBlock(self.dim, self.groups, name="spatial_in", **lora)(jnp.concatenate([pan, x_t], -1), temb)
        downs = [Down(slope, name=f"down_{i}") for i in range(2)]  # shared by both branches
        ups = [Up(slope, name=f"up_{i}") for i in range(2)]
        skips: list[tuple[jax.Array, jax.Array]] = []
        for i in range(LEVELS):
            if i in (3, 4):  # up path: level 3 takes level 1's skips, level 4 level 0's
                sx, sy = skips[4 - i]
                x, y = ups[i - 3](x, sx), ups[i - 3](y, sy)
            if self.fmim:
                xm = channel_scale(x, float(self.fmim_b[i]))
                ym = fourier_scale(y, float(self.fmim_s[i]), int(self.fmim_threshold))
            else:
                xm, ym = x, y
            x = APFM(self.dim_head, self.mlp_ratio, slope, name=f"spectral_{i}", **lora)(xm, ym)
            y = SpatialBlock(self.rb_ratio, slope, self.groups, name=f"spatial_{i}", **lora)(y, temb)
            if i in (0, 1):
                skips.append((x, y))
                x, y = downs[i](x), downs[i](y)

        h = _lrelu(_conv(self.dim, name="head_0")(jnp.concatenate([x, y], -1)), slope)
        out = _conv(c, name="head_1")(h)
        r = int(self.skip_factor)
        return out + pixel_shuffle(_conv(r * r * c, name="skip")(pixel_unshuffle(lms, r)), r)


# ----------------------------------------------------------------------------- tiled denoising
def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of ``tile``-pixel windows covering ``size`` pixels with ``overlap`` (static).

    ``[0]`` when ``size <= tile``; else every ``tile - overlap`` pixels, the last one flush with the end.
    """
    if size <= tile:
        return [0]
    stride = max(1, tile - overlap)
    return list(range(0, size - tile, stride)) + [size - tile]


def ramp(tile: int, overlap: int) -> np.ndarray:
    """Blending weights (tile,) float32 in (0, 1]: rising linearly over ``overlap`` pixels at both ends."""
    i = np.arange(tile)
    return (np.minimum(np.minimum(i + 1, tile - i), overlap + 1) / (overlap + 1)).astype(np.float32)


ApplyFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


def _rbg_key(key: Any) -> jax.Array:
    """An ``'rbg'`` key derived from any JAX key (raw uint32[2] or typed): (4,) key data."""
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    data = jnp.asarray(key, jnp.uint32).reshape(-1)
    data = jnp.concatenate([data, data ^ jnp.uint32(0x9E3779B9)])[:4]
    return jax.random.wrap_key_data(jnp.pad(data, (0, 4 - data.shape[0])), impl="rbg")


def tiled(apply_fn: ApplyFn, tile: int, overlap: int, tile_batch: int = 0) -> ApplyFn:
    """``apply_fn`` evaluated on overlapping ``tile`` x ``tile`` windows of (x_t, cond), blended.

    Inputs no larger than ``tile`` go through ``apply_fn`` whole. Otherwise each window's
    prediction is weighted by the outer product of :func:`ramp` and the weighted sum divided
    by the summed weights. ``tile_batch`` windows (0: all) share one call (``lax.map`` over
    groups of them). Shapes are static, so the result is jittable.
    """
    if tile < 1 or overlap < 0 or overlap >= tile:
        raise InputError(f"tile must be >= 1 and 0 <= tile_overlap < tile, got {tile} and {overlap}")

    def fn(params: Any, x: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        b, h, w, _ = x.shape
        th, tw = min(tile, h), min(tile, w)
        if (th, tw) == (h, w):
            return apply_fn(params, x, t, cond)
        pos = np.array([(i, j) for i in tile_starts(h, th, overlap) for j in tile_starts(w, tw, overlap)])
        n = len(pos)
        chunk = n if tile_batch <= 0 else min(int(tile_batch), n)
        groups = -(-n // chunk)
        padded = np.concatenate([pos, np.repeat(pos[-1:], groups * chunk - n, axis=0)])
        rows = (padded[:, 0, None] + np.arange(th))[:, :, None]  # (P, th, 1)
        cols = (padded[:, 1, None] + np.arange(tw))[:, None, :]  # (P, 1, tw)

        def windows(a: jax.Array) -> jax.Array:  # (B, H, W, C) -> (groups, chunk * B, th, tw, C): one gather
            g = jnp.moveaxis(a[:, rows, cols], 1, 0)  # (P, B, th, tw, C)
            return g.reshape(groups, chunk * b, th, tw, a.shape[-1])

        xs, cs = windows(x), windows(cond)
        tb = jnp.tile(jnp.broadcast_to(jnp.asarray(t).reshape(-1), (b,)), chunk)
        if groups == 1:
            preds = apply_fn(params, xs[0], tb, cs[0])[None]
        else:
            preds = jax.lax.map(lambda xc: apply_fn(params, xc[0], tb, xc[1]), (xs, cs))
        preds = preds.reshape(groups * chunk, b, th, tw, -1)[:n].astype(jnp.float32)
        wt = np.outer(ramp(th, overlap), ramp(tw, overlap))  # (th, tw)
        total = np.zeros((h, w), np.float32)
        np.add.at(total, (rows[:n], cols[:n]), np.broadcast_to(wt, (n, th, tw)))
        out = jnp.zeros((b, h, w, preds.shape[-1]), jnp.float32)
        out = out.at[:, rows[:n], cols[:n]].add(jnp.moveaxis(preds * wt[None, None, :, :, None], 0, 1))  # one scatter-add
        return out / jnp.asarray(total)[None, :, :, None]

    return fn


@functools.lru_cache(maxsize=32)
def denoiser_fn(net: tuple[tuple[str, Any], ...], tile: int = 0, overlap: int = 0, tile_batch: int = 0) -> ApplyFn:
    """The pure ``(params, x_t, t, cond) -> x0^`` of an unbound :class:`SSNet` with fields ``net``
    (``params`` = the wrapper's ``params['denoiser']``), tiled when ``tile`` > 0.

    Cached: the same arguments give the same function object, so the core's jitted samplers
    (which take it as a static argument) compile once.
    """
    module = SSNet(**dict(net), parent=None)  # unbound, also when first built inside a module method

    def apply(params: Any, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        return module.apply({"params": params}, x_t, t, cond)

    return tiled(apply, int(tile), int(overlap), int(tile_batch)) if tile > 0 else apply


def _schedule(name: str, T: int) -> diffusion.Schedule:
    return diffusion.make_schedule(name, T)  # rebuilt per trace: cached arrays would leak tracers


# ----------------------------------------------------------------------------- the model
class SSDiff(nn.Module):
    """SSDiff as a model of the one trainer (registry contract with its own objective).

    * ``denoise(x_t, t, cond)``: the SSNet (``params['denoiser']``), x_t (B, H, W, C), t (B,)
      int32 in [0, T), cond ``concat([lms, pan])`` (B, H, W, C + 1) -> x0^ (B, H, W, C).
    * ``training_loss(batch, rng)``: :func:`~pansharp_jax.generative.diffusion.pansharp_loss`
      of the batch (``gt``, ``lms``, ``pan``) with this model's schedule, parameterisation,
      target and loss; no extra metrics.
    * ``sample(lms, pan, rng, samples=, steps=, eta=)``: (mean, std) of ``samples`` DDIM draws
      of the fused image, (N, H, W, C) each, [0, 1] scale, not clipped (tiled denoiser);
      ``make_sampler(params)`` is the same for ``Method.sample`` / ``pansharp sample``.
    * ``eval_output(batch, rng)`` and ``__call__(lrms, pan, lms, train=False)``: the mean of
      ``eval_samples`` DDIM (eta 0) draws with ``sample_steps`` steps, keys ``rng`` and
      ``PRNGKey(seed)``. During ``init``, ``__call__`` runs the denoiser once (on at most a
      ``tile`` x ``tile`` crop) to create the params and returns ``lms`` plus that prediction
      on the crop.

    The samplers run the denoiser as a pure apply of an unbound :class:`SSNet` on
    ``self.variables['params']['denoiser']`` (bound modules cannot be called inside ``lax.scan``).
    """

    net: tuple[tuple[str, Any], ...]
    schedule: str = "cosine"
    T: int = 1000
    parameterisation: str = "x0"
    loss: str = "l1"
    target: str = "residual"
    sample_steps: int = 10
    eval_samples: int = 1
    clip_x0: float = 1.0
    tile: int = 64
    tile_overlap: int = 16
    tile_batch: int = 0
    seed: int = 0

    def setup(self) -> None:
        self.denoiser = SSNet(**dict(self.net))

    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Flax ``init``, with the params drawn by JAX's ``'rbg'`` PRNG seeded from the given key(s).

        The same key gives the same params (on one backend); XLA compiles the ~130 random
        initialisers about 3x faster than with threefry keys, which every training start and
        every checkpoint restore pays. ``rngs``: a key or ``{'params': key, ...}``.
        """
        rngs = {k: _rbg_key(v) for k, v in rngs.items()} if isinstance(rngs, dict) else _rbg_key(rngs)
        return super().init(rngs, *args, **kwargs)

    def denoise(self, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        """The SSNet's prediction (see the class docstring)."""
        return self.denoiser(x_t, t, cond)

    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del lrms, train  # the diffusion sees lms and pan only
        lms, pan = jnp.asarray(lms, jnp.float32), jnp.asarray(pan, jnp.float32)
        if self.is_initializing():
            th, tw = min(self.tile, lms.shape[1]), min(self.tile, lms.shape[2])
            crop_l, crop_p = lms[:, :th, :tw], pan[:, :th, :tw]
            t = jnp.zeros((lms.shape[0],), jnp.int32)
            x0 = self.denoise(jnp.zeros_like(crop_l), t, diffusion.pansharp_condition(crop_l, crop_p))
            return lms.at[:, :th, :tw].add(x0)
        return self.eval_output({"lms": lms, "pan": pan}, jax.random.PRNGKey(int(self.seed)))

    def training_loss(self, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The diffusion loss of ``batch`` (float32 scalar) and no extra metrics."""
        loss = diffusion.pansharp_loss(
            lambda _p, x, t, c: self.denoise(x, t, c), None, batch, rng, _schedule(self.schedule, int(self.T)),
            parameterisation=self.parameterisation, target=self.target, loss=self.loss,
        )  # fmt: skip
        return loss, {}

    def sample(
        self, lms: jax.Array, pan: jax.Array, rng: jax.Array, *, samples: int, steps: int | None = None, eta: float = 0.0
    ) -> tuple[jax.Array, jax.Array]:
        """(mean, std) of ``samples`` DDIM draws for lms (N, H, W, C), pan (N, H, W, 1); (N, H, W, C) each."""
        return self._draws(self.variables["params"]["denoiser"], lms, pan, rng, samples, steps, eta)

    def _draws(
        self, den: Any, lms: jax.Array, pan: jax.Array, rng: jax.Array, samples: int, steps: int | None, eta: float
    ) -> tuple[jax.Array, jax.Array]:
        """:meth:`sample` with the denoiser's params ``den`` given (reads only fields: works unbound)."""
        fn = denoiser_fn(self.net, int(self.tile), int(self.tile_overlap), int(self.tile_batch))
        clip = (-float(self.clip_x0), float(self.clip_x0)) if self.clip_x0 > 0 else None
        return diffusion.sample_hrms(
            fn, den, jnp.asarray(lms, jnp.float32), jnp.asarray(pan, jnp.float32), rng, _schedule(self.schedule, int(self.T)),
            samples=int(samples), steps=int(steps or self.sample_steps), target=self.target, sampler="ddim",
            eta=float(eta), parameterisation=self.parameterisation, clip_x0=clip,
        )  # fmt: skip

    def make_sampler(self, params: Any) -> Callable[..., tuple[jax.Array, jax.Array]]:
        """The generative-method hook of :mod:`pansharp_jax.methods.sources`, callable unbound.

        ``params``: the whole trained tree (holding ``'denoiser'``, or ``{'params': ...}``).
        Returns ``fn(lrms, pan, lms, rng, *, samples, steps) -> (mean, std)``: DDIM (eta 0)
        draws ``split(rng, samples)[s]`` of ``steps`` steps; (N, H, W, C) each, [0, 1] scale,
        not clipped; pure, jit it with ``samples`` / ``steps`` static.
        """
        den = (params["params"] if "params" in params else params)["denoiser"]

        def fn(lrms: Any, pan: Any, lms: Any, rng: Any, *, samples: int, steps: int) -> tuple[jax.Array, jax.Array]:
            del lrms  # the diffusion sees lms and pan only
            return self._draws(den, lms, pan, rng, samples, steps, 0.0)

        return fn

    def eval_output(self, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
        """The validation image: mean of ``eval_samples`` DDIM draws (N, H, W, C) for key ``rng``."""
        return self.sample(batch["lms"], batch["pan"], rng, samples=int(self.eval_samples))[0]


# ----------------------------------------------------------------------------- config and registry
def ssdiff_config(bands: int = 8) -> ml_collections.ConfigDict:
    """SSDiff's model config: the official SSNet sizes and diffusion settings (module docstring)."""
    return ml_collections.ConfigDict(
        {"name": "ssdiff", "bands": bands, "dim": 32, "dim_head": 16, "model_channels": 128, "mlp_ratio": 0.5,
         "rb_ratio": 0.5, "negative_slope": 0.2, "groups": 8, "skip_factor": 4, "fmim": True,
         "fmim_b": (1.2, 1.4, 1.6, 1.4, 1.2), "fmim_s": (0.9, 0.6, 0.3, 0.6, 0.9), "fmim_threshold": 1,
         "lora_rank": 4, "lora_alpha": 4.0, "schedule": "cosine", "T": 1000, "parameterisation": "x0", "loss": "l1",
         "target": "residual", "sample_steps": 10, "eval_samples": 1, "clip_x0": 1.0, "tile": 64, "tile_overlap": 16,
         "tile_batch": 0, "seed": 0}
    )  # fmt: skip


def net_fields(cfg: Any) -> tuple[tuple[str, Any], ...]:
    """The :class:`SSNet` constructor arguments of a model config, as a hashable tuple."""
    alpha = cfg.get("lora_alpha", None)
    return (
        ("dim", int(cfg.dim)), ("dim_head", int(cfg.dim_head)), ("model_channels", int(cfg.model_channels)),
        ("mlp_ratio", float(cfg.mlp_ratio)), ("rb_ratio", float(cfg.rb_ratio)), ("negative_slope", float(cfg.negative_slope)),
        ("groups", int(cfg.groups)), ("skip_factor", int(cfg.skip_factor)), ("fmim", bool(cfg.fmim)),
        ("fmim_b", tuple(float(v) for v in cfg.fmim_b)), ("fmim_s", tuple(float(v) for v in cfg.fmim_s)),
        ("fmim_threshold", int(cfg.fmim_threshold)), ("lora_rank", int(cfg.lora_rank)),
        ("lora_alpha", None if alpha is None else float(alpha)), ("T", int(cfg.T)),
    )  # fmt: skip


def build_ssdiff(cfg: Any) -> SSDiff:
    """The trainer's :class:`SSDiff` of a model config (:func:`ssdiff_config`)."""
    cfg = ml_collections.ConfigDict(cfg) if isinstance(cfg, dict) else cfg
    for key, allowed in (("schedule", diffusion.SCHEDULES), ("parameterisation", diffusion.PARAMETERISATIONS),
                         ("loss", diffusion.LOSSES), ("target", diffusion.TARGETS)):  # fmt: skip
        if str(cfg[key]) not in allowed:
            raise InputError(f"ssdiff: unknown {key} {cfg[key]!r}: use one of {', '.join(allowed)}")
    return SSDiff(
        net_fields(cfg), schedule=str(cfg.schedule), T=int(cfg.T), parameterisation=str(cfg.parameterisation),
        loss=str(cfg.loss), target=str(cfg.target), sample_steps=int(cfg.sample_steps), eval_samples=int(cfg.eval_samples),
        clip_x0=float(cfg.clip_x0), tile=int(cfg.tile), tile_overlap=int(cfg.tile_overlap), tile_batch=int(cfg.tile_batch),
        seed=int(cfg.seed),
    )  # fmt: skip


def param_shapes(cfg: Any) -> Any:
    """The params tree of the model config ``cfg`` as ShapeDtypeStructs (no compute, any size)."""
    side = 2 * math.lcm(4, int(cfg.skip_factor))
    bands, r = int(cfg.bands), int(cfg.skip_factor)
    lrms = jax.ShapeDtypeStruct((1, side // r, side // r, bands), jnp.float32)
    pan = jax.ShapeDtypeStruct((1, side, side, 1), jnp.float32)
    lms = jax.ShapeDtypeStruct((1, side, side, bands), jnp.float32)
    model = build_ssdiff(cfg)
    return jax.eval_shape(lambda a, b, c: model.init(jax.random.PRNGKey(0), a, b, c), lrms, pan, lms)["params"]


def branch_prefixes(branch: str) -> list[str]:
    """The param sub-trees of one branch: ``denoiser/{branch}_in`` and ``denoiser/{branch}_{0..4}``."""
    if branch not in BRANCHES:
        raise InputError(f"unknown SSDiff branch {branch!r}: use one of {', '.join(BRANCHES)}")
    return [f"denoiser/{branch}_in"] + [f"denoiser/{branch}_{i}" for i in range(LEVELS)]


def lbaf_frozen(cfg: Any, branch: str | None) -> str:
    """``config.optim.frozen`` of an L-BAF stage, comma-separated.

    ``branch=None`` (pre-training): every LoRA factor ('' when ``lora_rank`` is 0), so that
    B stays 0. ``'spatial'`` / ``'spectral'``: everything except that branch's LoRA factors.
    The paths depend on the architecture only (not on widths or bands).
    """
    params = param_shapes(cfg)
    if branch is None or branch == "":
        return ",".join(lora_paths(params))
    return ",".join(freeze_all_but_lora(params, branch_prefixes(branch)))


def _as_batch(lrms: Any, pan: Any, lms: Any) -> tuple[jax.Array, jax.Array, jax.Array | None, bool]:
    lrms, pan = jnp.asarray(lrms, jnp.float32), jnp.asarray(pan, jnp.float32)
    single = lrms.ndim == 3
    if single:
        lrms = lrms[None]
        pan = pan[None] if pan.ndim in (2, 3) else pan
    if pan.ndim == 3:
        pan = pan[..., None]
    if lrms.ndim != 4 or pan.ndim != 4 or pan.shape[-1] != 1 or pan.shape[0] != lrms.shape[0]:
        raise InputError(f"lrms must be (h, w, C) or (N, h, w, C) and pan (H, W[, 1]) alike; got {lrms.shape} and {pan.shape}")
    if lms is not None:
        lms = jnp.asarray(lms, jnp.float32)
        lms = lms[None] if single and lms.ndim == 3 else lms
    return lrms, pan, lms, single


@functools.partial(jax.jit, static_argnames=("model", "samples", "steps"))
def _sample_jit(model: SSDiff, params: Any, lms: jax.Array, pan: jax.Array, rng: jax.Array, samples: int, steps: int) -> Any:
    return model.make_sampler(params)(None, pan, lms, rng, samples=samples, steps=steps)


def ssdiff_sampler(params: Any, model_config: Any) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """``sample(lrms, pan, rng=None, *, samples=8, steps=None, lms=None) -> (mean, std)`` on plain arrays.

    A convenience over :meth:`SSDiff.make_sampler` (the hook ``Method.sample`` uses) for
    notebooks: ``params`` the model's params, as restored from a checkpoint; ``model_config``
    its model config. ``lrms`` (h, w, C) or (N, h, w, C), ``pan``
    (H, W[, 1]) or (N, H, W, 1), [0, 1] scale; ``lms`` optional (else ``interp23tap``-style
    upsampling of ``lrms``); ``rng`` a key or an int seed (None: 0); ``steps`` DDIM (eta 0)
    steps (None: the config's ``sample_steps``). Returns (mean, std) over the
    samples, float32 (H, W, C) or (N, H, W, C) like the input, [0, 1] scale, not clipped.
    """
    cfg = ml_collections.ConfigDict(model_config) if isinstance(model_config, dict) else model_config
    model = build_ssdiff(cfg)
    if isinstance(params, dict) and set(params) == {"params"}:
        params = params["params"]

    def sample(
        lrms: Any, pan: Any, rng: Any = None, *, samples: int = 8, steps: int | None = None, lms: Any = None
    ) -> tuple[jax.Array, jax.Array]:
        lr, p, lm, single = _as_batch(lrms, pan, lms)
        ratio = p.shape[1] // lr.shape[1]
        if p.shape[1:3] != (ratio * lr.shape[1], ratio * lr.shape[2]):
            raise InputError(f"pan {p.shape[1]}x{p.shape[2]} is not an integer multiple of lrms {lr.shape[1]}x{lr.shape[2]}")
        if lr.shape[-1] != int(cfg.bands):
            raise InputError(f"this SSDiff has {int(cfg.bands)} bands, the input {lr.shape[-1]}")
        if lm is None:
            from pansharp_jax.classical import upsample_ms

            lm = upsample_ms(lr, ratio)
        if rng is None or isinstance(rng, (int, np.integer)):
            key = jax.random.PRNGKey(0 if rng is None else int(rng))
        else:
            key = rng
        n_steps = int(steps or cfg.sample_steps)
        mean, std = _sample_jit(model, params, jnp.asarray(lm, jnp.float32), p, key, int(samples), n_steps)
        return (mean[0], std[0]) if single else (mean, std)

    return sample


SSDIFF_ENTRY = ModelEntry(
    "ssdiff", build_ssdiff, ssdiff_config, "SSDiff (spatial-spectral dual-branch diffusion with APFM, FMIM and LoRA fine-tuning)"
)

__all__ = [
    "APFM", "BRANCHES", "SSDIFF_ENTRY", "SSDiff", "SSNet", "branch_prefixes", "build_ssdiff", "channel_scale", "denoiser_fn",
    "fourier_scale", "lbaf_frozen", "net_fields", "param_shapes", "pixel_shuffle", "pixel_unshuffle", "ramp", "ssdiff_config",
    "ssdiff_sampler", "tile_starts", "tiled",
]  # fmt: skip

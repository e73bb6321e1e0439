"""FusionMamba (Peng, Zhu, Deng, Deng, Lei, IEEE TGRS 2024) in Flax, loadable from the authors' weights.

A two-stream (PAN / MS) U-shaped network whose stages are "FusionMamba" blocks: each stream
passes its own 2-D Mamba (four scan directions), then two dual-input Mambas exchange the
modalities (the guide stream supplies the step size and the B, C projections of the state
space model), and a linear layer fuses the two results. The MS is upsampled by a learned
conv + pixel shuffle, which is also the global residual; a spectral gate (a bidirectional
Mamba over the band maxima of the low-resolution MS) scales the predicted detail per band.

Registry contract: ``module.apply({'params': p}, lrms, pan, lms, train=False) -> hrms`` with
lrms (N, h, w, C), pan (N, H, W, guide_bands), NHWC float32 on [0, 1]; ``lms`` is accepted
and unused (the network learns its own upsampling); the output (N, H, W, C) is not clipped.

Structure (``dim`` = 32, C bands, r = ratio; sizes of the released WV3 model)::

    skip = PixelShuffle_r(conv3x3(lrms, C -> r^2 C, no bias))        learned upsampling
    p, m = LReLU(conv3x3(pan, 1 -> 32)), LReLU(conv3x3(skip, C -> 32))
    stage0  FusionMamba(32)  @ H x W      -> shared Down(32 -> 64)      (skip0 = block output)
    stage1  FusionMamba(64)  @ H/2        -> shared Down(64 -> 128)     (skip1)
    stage2  FusionMamba(128) @ H/4        -> shared Up(128 -> 64, + skip1)
    stage3  FusionMamba(64)  @ H/2        -> shared Up(64 -> 32, + skip0)
    stage4  FusionMamba(32)  @ H x W, final: the fused map only
    hrms = conv3x3(LReLU(conv3x3(fused, 32 -> 32)), 32 -> C) * gate(lrms) + skip

    Down(a -> b) = LReLU(conv2x2 stride 2);  Up(a -> b, + s) = LReLU(1x1(dw3x3(LReLU(convT2x2/2(x)) + s)))
    The same Down/Up instance is applied to both streams.

    FusionMamba(d) on row-major tokens (N, H*W, d):
      p = p + Mamba_v6(LN(p));  m = m + Mamba_v6'(LN(m))            (SingleMambaBlock, depth 1)
      spa = p + Mamba_v7(LN0(p), guide=LN1(m));  spe = m + Mamba_v7'(LN0(m), guide=LN1(p))
      f = Linear((spa + spe) / 2)
      outputs ((p + f) / 2, (m + f) / 2), or f alone in the final block.

    gate(lrms) = sigmoid(Linear_32->1(Mamba_v2(LN(Linear_1->32(maxpool_hw(lrms)[..., None])))))
      the C band maxima are a length-C sequence of scalars; one gate value per band.

The Mamba layers are the Vim fork's (hustvl/Vim, mamba-1p1p1) with the FusionMamba
``mamba_simple.py`` on top, settings ``d_state=8, expand=1, d_conv=4, dt_rank=ceil(d/16),
if_devide_out=True, use_norm=True``, no in/out projection biases:

* ``v6`` (one input, 2-D cross scan): ``x, z = in_proj(h)``; for each of four directions k
  (row-major, row-major reversed, column-major, column-major reversed) with its own
  ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``: ``u = SiLU(causal depthwise
  conv1d(x_k))``, ``(dt, B, C) = x_proj(u)``, ``y_k = S6(u, dt_proj(dt) + bias, -exp(A_log),
  B, C, D) * SiLU(z_k)``. The four outputs are put back in row-major order, summed, divided
  by 4, LayerNorm'ed (``norm``) and projected (``out_proj``).
* ``v7`` (two inputs): as v6, but ``(dt, B, C) = x_proj(g_k)`` with ``g = in_proj_b(guide)``
  (no convolution, no activation on the guide); ``u`` still comes from the main input.
* ``v2`` (one input, 1-D): two directions (forward, reversed), divided by 2.

The S6 recurrence is :func:`pansharp_jax.nn.selective_scan.selective_scan`. Config knobs
(numerics identical up to float rounding):

* ``scan_method``: ``'auto'`` (config default, also for imported checkpoints: ``'sequential'``
  on CPU, ``'chunked'`` with ``scan_remat`` on accelerators), ``'associative'`` (O(log L)
  depth; keeps several (N, L, d, d_state) arrays per direction for reverse mode: 3.2 GiB of
  training temporaries per 64 x 64 sample, so not a training default), ``'sequential'`` (a
  ``lax.scan`` over tokens: the cheapest to compile and the fastest on CPU; its hand-written
  reverse mode keeps only the scan inputs) or ``'chunked'`` (``scan_chunk`` tokens per step).
  ``scan_remat``: recompute chunk internals in reverse mode (chunked only).
* ``scan_directions``: ``'batched'`` runs the 2/4 directions of a layer as one vmapped
  computation, ``'serial'`` one after the other (a ``lax.scan`` over directions; 1/4 of the
  activation memory); ``'auto'`` (default) is serial once one direction's (N, L, d_inner)
  activations reach 2^23 elements (e.g. a 512 x 512 PAN at stage 0), else batched.
* ``remat_blocks``: recompute each single/cross Mamba block in reverse mode. With
  ``scan_directions='serial'`` and XLA:CPU's low-memory scheduler
  (:mod:`pansharp_jax.runtime`) a 512 x 512 training step fits in about 10 GiB.

**Training memory.** What the train step keeps for the backward pass is kept lean at the
source: the scan inputs only (``'sequential'``, or ``'chunked'`` + remat: one state per chunk);
the SiLU(z) gate applied once after the directions are merged (it commutes with the
reordering), not on four reordered copies of z; the cross (v7) Mamba's guide projected in
row-major order before its (rank + 2 d_state)-wide projections are reordered, not four
reordered d-wide guide copies; the causal conv + SiLU with a reverse mode that keeps only its
input (:func:`causal_conv_silu`; autodiff kept a padded copy, k shifted slices and the
pre-activation per direction); the step's softplus keeping its output (which the scan keeps
anyway), not its input. Planned temporaries of the trainer's step (L1, Adam; 64 x 64 PAN,
8 bands; ``benchmarks/train_memory.py``, XLA:CPU with the trainer's low-memory scheduler; the first row with XLA's default scheduler):

=========================================  =====  ========  ============  ==============
scan (directions batched, 'auto')          batch  temp GiB  GiB / sample  compile s
=========================================  =====  ========  ============  ==============
'associative' (the former default)             1      3.20          3.20  86
'auto' = 'sequential' on CPU                   1     0.373         0.373  73 (57 CPU s)
'auto' = 'sequential' on CPU                   2     0.726         0.363  82 (61 CPU s)
'auto' = 'sequential' on CPU                  32     11.50         0.359  84
'chunked' + remat (accelerator 'auto')         1     0.384         0.384  127
=========================================  =====  ========  ============  ==============

(2-core CPU shared with other jobs, load ~5: compile wall times are inflated. The authors'
recipe, batch 32, was ~100 GiB with 'associative'. The last row is compiled for CPU; XLA's GPU
buffer assignment differs in detail. ``scan_directions='serial'`` halves the temporaries again,
0.179 GiB per sample, for a slower compile.)

CPU example (2 cores, shared machine): the released model on a 1280 x 1280 WV2 PAN
(320 x 320 x 8 MS) in one piece, directions serial ('auto'): ``'sequential'`` 101 s, peak RSS
11.6 GB; ``'chunked'`` (256) 367 s, 7.7 GB; batched directions exceeded 20 GB.

Facts the published records leave open, and what this module does:

* **No fixed image size.** The official blocks bake ``input_h``/``input_w`` into the
  column-major reordering, so one PyTorch model runs one input size (the authors' test
  script cuts scenes into tiles of that size). Here H, W come from the input: the same
  params run 64 x 64 training patches and whole scenes. A whole scene is *not* the same as
  the authors' tiled inference (each scan then spans the whole image).
* **Size constraint.** Two stride-2 downsamplings and the U-Net skips need the PAN height
  and width to be multiples of 4 (automatic for ratio 4 or 8: H = ratio x h); other sizes
  raise :class:`~pansharp_jax.errors.InputError` (crop or pad the scene).
* **Input scale.** The official loaders divide the PanCollection DN by 2047 (11-bit WV3;
  PanCollection's GF2 by 1023) and feed the network directly, which is exactly our [0, 1]
  convention: inputs are used unchanged, and the authors' test script clips the output to
  [0, 1] (do it with ``pansharp_jax.models.fuse(..., clip=True)``).
* **Ratio.** The learned upsampler is ``conv3x3(C -> ratio^2 C)`` + PixelShuffle(ratio); the
  official code only uses ratio 4. ``ratio`` 8 (CAVE x8) changes only that layer.
* **Guide bands.** ``guide_bands`` (1 for PAN) sets the input channels of ``raise_pan_dim``;
  3 for an RGB HR-MSI guide in multispectral/hyperspectral image fusion (MHIF; the README
  lists CAVE, code not released: our extrapolation).
* **Variants.** ``variant='420'`` is the released code (Nov. 2024, ``weights/420.pth``,
  735,401 parameters for 8 bands). ``variant='400'`` is the code of May 2024 that went with
  the earlier ``400.pth`` (769,864 parameters): no spectral gate, a full 3x3 conv in Up,
  FusionMamba blocks output ``(p, m + f)`` (the PAN stream bypasses the fusion) and the head
  reads the MS stream of a non-final stage4: ``hrms = to_hrms(m + f) + skip``. The Mamba
  file for 400.pth was not in the repository at that time; we assume the later one.
* **LayerNorm** is PyTorch's (eps 1e-5, two-pass variance); LeakyReLU slope 0.01 (PyTorch
  default); initialisation as PyTorch and Mamba (``A_log = log(1..d_state)``, ``D = 1``,
  ``dt_proj`` bias = softplus^-1 of log-uniform dt in [1e-3, 0.1], weights uniform
  +-dt_rank^-0.5; convs and linears U(+-1/sqrt(fan_in))).

Parameter names mirror the PyTorch state dict (``stage0/fm/spa_cross_mamba/block/x_proj_c``;
a numeric index joins its parent: ``to_hrms.2`` -> ``to_hrms_2``), so the import in
:mod:`pansharp_jax.models.convert_fusionmamba` is a renaming plus layout changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from pansharp_jax.errors import InputError
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn import selective_scan as _ss
from pansharp_jax.nn.scan2d import (
    bidirectional_merge,
    bidirectional_scan,
    cross_merge,
    cross_scan,
    direction_transforms,
    use_serial_directions,
)

__all__ = ["FUSIONMAMBA_ENTRY", "FusionMamba", "FusionMambaBlock", "Mamba", "VARIANTS", "fusionmamba_config"]

VARIANTS = ("420", "400")
_DN = ("NHWC", "HWIO", "NHWC")
_SUFFIXES = ("", "_b", "_c", "_d")  # PyTorch names of the scan directions' parameters
_LN_EPS = 1e-5


# ---------------------------------------------------------------------------- initialisers


def _uniform(bound: float) -> Callable[..., jax.Array]:
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, tuple(shape), dtype, -bound, bound)

    return init


def _a_log_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    del key  # S4D-real: A[d, n] = -(n + 1)
    return jnp.broadcast_to(jnp.log(jnp.arange(1, shape[-1] + 1, dtype=dtype)), tuple(shape))


def _dt_bias_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    lo, hi, floor = math.log(1e-3), math.log(0.1), 1e-4
    dt = jnp.maximum(jnp.exp(jax.random.uniform(key, tuple(shape), dtype) * (hi - lo) + lo), floor)
    return dt + jnp.log(-jnp.expm1(-dt))  # softplus^-1


def _leaky(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.01)


# ---------------------------------------------------------------------------- layers


class _LinearParams(nn.Module):
    """The params of ``torch.nn.Linear(in_features, out_features)``: kernel (in, out), bias or None."""

    in_features: int
    out_features: int
    use_bias: bool = True
    kernel_init: Callable[..., jax.Array] | None = None
    bias_init: Callable[..., jax.Array] | None = None

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array | None]:
        default = _uniform(1.0 / math.sqrt(self.in_features))
        kernel = self.param("kernel", self.kernel_init or default, (self.in_features, self.out_features))
        bias = self.param("bias", self.bias_init or default, (self.out_features,)) if self.use_bias else None
        return kernel, bias


class _Linear(nn.Module):
    """``torch.nn.Linear`` on the last axis (PyTorch initialisation)."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = _uniform(1.0 / math.sqrt(x.shape[-1]))
        y = x @ self.param("kernel", init, (x.shape[-1], self.features)).astype(x.dtype)
        return y + self.param("bias", init, (self.features,)) if self.use_bias else y


class _Conv1dParams(nn.Module):
    """The params of a depthwise ``torch.nn.Conv1d(d, d, k, groups=d)``: kernel (k, d), bias (d,)."""

    channels: int
    kernel_size: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        init = _uniform(1.0 / math.sqrt(self.kernel_size))  # fan_in = 1 x k
        return (
            self.param("kernel", init, (self.kernel_size, self.channels)),
            self.param("bias", init, (self.channels,)),
        )


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` on NHWC (square kernel, zero padding, stride, groups).

    Params: ``kernel`` (k, k, in / groups, out) = PyTorch (out, in / groups, kh, kw)
    transposed (2, 3, 1, 0); ``bias`` (out,) unless ``use_bias=False``.
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin, g = self.kernel_size, x.shape[-1], self.groups
        init = _uniform(1.0 / math.sqrt(cin // g * k * k))
        kernel = self.param("kernel", init, (k, k, cin // g, self.features))
        p = self.padding
        y = jax.lax.conv_general_dilated(
            x, kernel.astype(x.dtype), (self.stride,) * 2, ((p, p), (p, p)), dimension_numbers=_DN,
            feature_group_count=g,
        )
        if self.use_bias:
            y = y + self.param("bias", init, (self.features,))
        return y


class ConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d(in, out, k, stride=k, padding=0)`` on NHWC (non-overlapping).

    Each input pixel becomes a k x k block: ``y[k i + a, k j + b] = x[i, j] @ kernel[a, b] + bias``.
    Params: ``kernel`` (k, k, in, out) = PyTorch (in, out, kh, kw) transposed (2, 3, 0, 1).
    """

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        n, h, w, cin = x.shape
        init = _uniform(1.0 / math.sqrt(self.features * k * k))  # PyTorch: fan_in = weight.size(1) * k * k
        kernel = self.param("kernel", init, (k, k, cin, self.features))
        bias = self.param("bias", init, (self.features,))
        y = jnp.einsum("nhwc,abco->nhawbo", x, kernel.astype(x.dtype))
        return y.reshape(n, h * k, w * k, self.features) + bias


def _layer_norm(name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=_LN_EPS, use_fast_variance=False, name=name)


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
    """``torch.nn.PixelShuffle(r)`` on NHWC: channel c * r^2 + i * r + j -> pixel (r h + i, r w + j) of band c."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, c // (r * r), r, r).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * r, w * r, c // (r * r))


# ---------------------------------------------------------------------------- scan orders


def _to_directions(x: jax.Array, ndir: int, hw: tuple[int, int] | None) -> jax.Array:
    """Row-major tokens (N, L, d) -> (ndir, N, L, d): row-major, reversed, and for ``ndir`` = 4
    column-major and column-major reversed (:func:`~pansharp_jax.nn.scan2d.cross_scan` order).

    Built from reshapes, transposes and flips only: a gather with index arrays would make the
    backward pass a scatter-add, which XLA runs very slowly on CPU.
    """
    if ndir == 2:
        return jnp.moveaxis(bidirectional_scan(x), 1, 0)
    n, length, d = x.shape
    return jnp.moveaxis(cross_scan(x.reshape(n, hw[0], hw[1], d)), 1, 0)  # type: ignore[index]


def _from_directions(y: jax.Array, hw: tuple[int, int] | None) -> jax.Array:
    """(ndir, N, L, d) in :func:`_to_directions` order -> (N, L, d) row-major, summed over directions."""
    ndir, n, length, d = y.shape
    y = jnp.moveaxis(y, 0, 1)
    if ndir == 2:
        return bidirectional_merge(y)
    return cross_merge(y, hw[0], hw[1]).reshape(n, length, d)  # type: ignore[index]


# ---------------------------------------------------------------------------- causal conv


def _causal_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """Causal depthwise conv1d without bias: x (N, L, d), w (k, d); y[t] = sum_j w[j] x[t - (k - 1) + j]."""
    k, length = w.shape[0], x.shape[1]
    xp = jnp.pad(x, ((0, 0), (k - 1, 0), (0, 0)))
    return sum(w[j] * xp[:, j : j + length] for j in range(k))


@jax.custom_vjp
def causal_conv_silu(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """``SiLU(causal depthwise conv1d(x) + b)`` (PyTorch ``Conv1d(d, d, k, groups=d, padding=k-1)``
    keeping the first L outputs): x (N, L, d), w (k, d), b (d,) -> (N, L, d).

    Reverse mode keeps only ``x`` (and the weights): autodiff of the shifted-slice sum keeps a
    padded copy, k shifted slices and the pre-activation, ~6 copies of every direction's
    tokens, which were a fifth of FusionMamba's training memory. The backward recomputes the
    pre-activation (cheap, elementwise) and correlates the cotangent with the flipped kernel.
    """
    return jax.nn.silu(_causal_conv(x, w) + b)


def _causal_conv_silu_fwd(x, w, b):
    return causal_conv_silu(x, w, b), (x, w, b)


def _causal_conv_silu_bwd(res, gy):
    # the barrier ties the recomputation to the cotangent: otherwise XLA's CSE merges it with
    # the forward pass's identical ops and keeps their results alive until here after all
    (x, w, b), gy = jax.lax.optimization_barrier((res, gy))
    k, length = w.shape[0], x.shape[1]
    pre = _causal_conv(x, w) + b
    sig = jax.nn.sigmoid(pre)
    gpre = gy * sig * (1.0 + pre * (1.0 - sig))  # d silu(p) / dp = s (1 + p (1 - s))
    gp = jnp.pad(gpre, ((0, 0), (0, k - 1), (0, 0)))
    gx = sum(w[j] * gp[:, k - 1 - j : k - 1 - j + length] for j in range(k))
    xp = jnp.pad(x, ((0, 0), (k - 1, 0), (0, 0)))
    gw = jnp.stack([jnp.sum(gpre * xp[:, j : j + length], axis=(0, 1)) for j in range(k)])
    return gx, gw, jnp.sum(gpre, axis=(0, 1))


causal_conv_silu.defvjp(_causal_conv_silu_fwd, _causal_conv_silu_bwd)


@jax.custom_vjp
def softplus_keep_output(x: jax.Array) -> jax.Array:
    """``softplus(x)`` whose reverse mode keeps its output, not its input: the derivative
    ``sigmoid(x) = -expm1(-softplus(x))``. The selective scan keeps the step ``softplus(delta)``
    for its own backward pass anyway, so the (N, L, d) pre-activation need not be kept too."""
    return jax.nn.softplus(x)


def _softplus_fwd(x):
    y = jax.nn.softplus(x)
    return y, y


def _softplus_bwd(y, g):
    return (-g * jnp.expm1(-y),)


softplus_keep_output.defvjp(_softplus_fwd, _softplus_bwd)


# ---------------------------------------------------------------------------- Mamba


class Mamba(nn.Module):
    """The FusionMamba/Vim Mamba mixer: ``bimamba_type`` v2 (1-D, 2 directions), v6, v7 (2-D, 4).

    ``__call__(x, hw=None, guide=None)``: x (N, L, d); ``hw`` = (H, W) with H * W = L for the
    2-D types (row-major tokens); ``guide`` (N, L, d) for v7. Returns (N, L, d). Parameter
    names are the PyTorch ones (``conv1d``, ``x_proj_b``, ``A_c_log``, ``D_d``, ...);
    ``scan_*`` choose how the recurrence is evaluated (module docstring).
    """

    d_model: int
    bimamba_type: str = "v6"
    d_state: int = 8
    d_conv: int = 4
    expand: int = 1
    scan_method: str = "associative"
    scan_chunk: int = 128
    scan_remat: bool = False
    scan_directions: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, hw: tuple[int, int] | None = None, guide: jax.Array | None = None) -> jax.Array:
        kind = self.bimamba_type
        if kind not in ("v2", "v6", "v7"):
            raise InputError(f"Mamba: bimamba_type must be v2, v6 or v7, got {kind!r}")
        n, length, d = x.shape
        di, ns, k = self.expand * d, self.d_state, self.d_conv
        rank = math.ceil(d / 16)
        ndir = 2 if kind == "v2" else 4
        if ndir == 4 and (hw is None or hw[0] * hw[1] != length):
            raise InputError(f"Mamba {kind}: needs hw = (H, W) with H * W = {length} tokens, got {hw}")
        if (kind == "v7") != (guide is not None):
            raise InputError(f"Mamba {kind}: a guide input is {'required' if kind == 'v7' else 'not used'}")

        w_in, _ = _LinearParams(d, 2 * di, use_bias=False, name="in_proj")()
        xz = x @ w_in.astype(x.dtype)
        xs, z = xz[..., :di], xz[..., di:]
        if guide is not None:
            w_g, _ = _LinearParams(d, di, use_bias=False, name="in_proj_b")()
            g = guide @ w_g.astype(x.dtype)

        dt_std = rank**-0.5
        conv_k, conv_b, w_x, w_dt, b_dt, a, dd = [], [], [], [], [], [], []
        for s in _SUFFIXES[:ndir]:
            ck, cb = _Conv1dParams(di, k, name=f"conv1d{s}")()
            wx, _ = _LinearParams(di, rank + 2 * ns, use_bias=False, name=f"x_proj{s}")()
            wdt, bdt = _LinearParams(
                rank, di, kernel_init=_uniform(dt_std), bias_init=_dt_bias_init, name=f"dt_proj{s}"
            )()
            conv_k.append(ck), conv_b.append(cb), w_x.append(wx), w_dt.append(wdt), b_dt.append(bdt)
            a.append(-jnp.exp(self.param(f"A{s}_log", _a_log_init, (di, ns))))
            dd.append(self.param(f"D{s}", nn.initializers.ones_init(), (di,)))
        per_direction = tuple(jnp.stack(v).astype(x.dtype) for v in (conv_k, conv_b, w_x, w_dt, b_dt, a, dd))

        kwargs: dict[str, Any] = {"method": self.scan_method, "chunk": self.scan_chunk}
        if self.scan_method == "chunked" and self.scan_remat:
            kwargs["remat"] = True
        serial = use_serial_directions(self.scan_directions, n * length * di)
        to_fns, back_fns = direction_transforms(ndir, hw)

        def direction(p):
            """One scan direction (its tokens in its own order), without the SiLU(z) gate.

            ``src_k``: v6/v2: unused; v7: the guide tokens in this direction's order (serial) or
            the guide's ``x_proj`` output (dt, B, C) in this direction's order (batched)."""
            ck, cb, wx, wdt, bdt, a_k, d_k, x_k, src_k = p
            u = causal_conv_silu(x_k, ck, cb)
            if guide is None:
                x_dbl = u @ wx
            else:  # v7: dt, B, C from the guide
                x_dbl = src_k @ wx if serial else src_k
            dt = softplus_keep_output(x_dbl[..., :rank] @ wdt + bdt)
            bm, cm = x_dbl[..., rank : rank + ns], x_dbl[..., rank + ns :]
            return _ss.selective_scan(u, dt, a_k, bm, cm, d_k, None, None, False, **kwargs)

        # The gate commutes with the reordering: back_k(y_k * SiLU(to_k(z))) = back_k(y_k) * SiLU(z),
        # so it is applied once, after the merge, on row-major tokens. Gating each direction
        # (as the PyTorch code does) would build and keep 4 reordered copies of z and of the
        # gated outputs for the backward pass.
        if serial:  # one direction alive at a time (whole scenes): order, scan, add back in place
            gsrc = g if guide is not None else xs

            def serial_step(acc, p):
                kk, params = p[0], p[1:]
                seq = [jax.lax.switch(kk, to_fns, v) for v in (xs, gsrc)]
                return acc + jax.lax.switch(kk, back_fns, direction((*params, *seq))), None

            y, _ = jax.lax.scan(serial_step, jnp.zeros_like(xs), (jnp.arange(ndir), *per_direction))
        else:  # the directions as one batched computation (cheaper to compile, more memory)
            if guide is not None:
                # v7: project the guide once in row-major order and reorder the (rank + 2 N)-wide
                # projections: the reordered d-wide guide copies are then never built nor kept
                proj = jnp.einsum("nld,kde->knle", g, per_direction[2])
                src = jnp.stack([to_fns[i](proj[i]) for i in range(ndir)])
            else:
                src = jnp.zeros((ndir,), x.dtype)  # unused placeholder (vmapped)
            seqs = _to_directions(xs, ndir, hw)
            y = _from_directions(jax.vmap(direction)((*per_direction, seqs, src)), hw)
        y = y * jax.nn.silu(z)
        y = y / ndir
        y = _layer_norm("norm")(y)
        w_out, _ = _LinearParams(di, d, use_bias=False, name="out_proj")()
        return y @ w_out.astype(y.dtype)


class SingleMambaBlock(nn.Module):
    """``h + Mamba_v6(LN(h))`` on tokens (N, L, d)."""

    mamba: dict

    @nn.compact
    def __call__(self, h: jax.Array, hw: tuple[int, int]) -> jax.Array:
        return h + Mamba(h.shape[-1], "v6", **self.mamba, name="block")(_layer_norm("norm")(h), hw)


class CrossMambaBlock(nn.Module):
    """``main + Mamba_v7(LN0(main), guide=LN1(guide))`` on tokens (N, L, d)."""

    mamba: dict

    @nn.compact
    def __call__(self, main: jax.Array, guide: jax.Array, hw: tuple[int, int]) -> jax.Array:
        block = Mamba(main.shape[-1], "v7", **self.mamba, name="block")
        return main + block(_layer_norm("norm0")(main), hw, guide=_layer_norm("norm1")(guide))


class FusionMambaBlock(nn.Module):
    """The dual-stream FusionMamba block on NHWC maps pan, ms (N, H, W, d).

    Returns ``((pan + f) / 2, (ms + f) / 2)``, or ``f`` when ``final`` (variant '420');
    ``(pan, ms + f)`` for variant '400' (see the module docstring).
    """

    mamba: dict
    depth: int = 1
    final: bool = False
    variant: str = "420"
    remat: bool = False  # recompute each Mamba block in the backward pass

    @nn.compact
    def __call__(self, pan: jax.Array, ms: jax.Array) -> Any:
        n, h, w, d = pan.shape
        hw = (h, w)
        p, m = pan.reshape(n, h * w, d), ms.reshape(n, h * w, d)
        single, cross = SingleMambaBlock, CrossMambaBlock
        if self.remat:  # static: hw (argument 2 of single, 3 of cross; self is 0)
            single, cross = nn.remat(single, static_argnums=(2,)), nn.remat(cross, static_argnums=(3,))
        for i in range(self.depth):
            p = single(self.mamba, name=f"spa_mamba_layers_{i}")(p, hw)
            m = single(self.mamba, name=f"spe_mamba_layers_{i}")(m, hw)
        spa = cross(self.mamba, name="spa_cross_mamba")(p, m, hw)
        spe = cross(self.mamba, name="spe_cross_mamba")(m, p, hw)
        f = _Linear(d, name="out_proj")((spa + spe) / 2)
        p, m, f = (t.reshape(n, h, w, d) for t in (p, m, f))
        if self.variant == "400":
            return p, m + f
        if self.final:
            return f
        return (p + f) / 2, (m + f) / 2


class _Down(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _leaky(Conv2d(self.features, 2, stride=2, name="down_0")(x))


class _Up(nn.Module):
    features: int
    variant: str = "420"

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
        x = _leaky(ConvTranspose2d(self.features, 2, name="up_0")(x)) + skip
        if self.variant == "400":
            return _leaky(Conv2d(self.features, 3, padding=1, name="conv_0")(x))
        x = Conv2d(self.features, 3, padding=1, groups=self.features, name="conv_0")(x)
        return _leaky(Conv2d(self.features, 1, name="conv_1")(x))


class _Stage(nn.Module):
    """FusionMamba block, then the shared sampler on both streams (``sample='down'`` or ``'up'``)."""

    out_features: int
    sample: str
    mamba: dict
    depth: int = 1
    variant: str = "420"
    remat: bool = False

    @nn.compact
    def __call__(self, pan, ms, pan_skip=None, ms_skip=None):
        pan, ms = FusionMambaBlock(self.mamba, self.depth, variant=self.variant, remat=self.remat, name="fm")(pan, ms)
        if self.sample == "down":
            down = _Down(self.out_features, name="sample")
            return down(pan), down(ms), pan, ms
        up = _Up(self.out_features, self.variant, name="sample")
        return up(pan, pan_skip), up(ms, ms_skip)


class SpectralGate(nn.Module):
    """SpeAttention('mamba'): per-band gate in (0, 1) from the band maxima of the LR MS, (N, 1, 1, C)."""

    dim: int
    mamba: dict

    @nn.compact
    def __call__(self, lrms: jax.Array) -> jax.Array:
        s = jnp.max(lrms, axis=(1, 2))[..., None]  # (N, C, 1): a length-C sequence of scalars
        s = _Linear(self.dim, name="block_0")(s)
        s = _layer_norm("block_1")(s)
        s = Mamba(self.dim, "v2", **self.mamba, name="block_2")(s)
        s = _Linear(1, name="block_3")(s)  # (N, C, 1)
        return jax.nn.sigmoid(s[..., 0])[:, None, None, :]


class FusionMamba(nn.Module):
    """FusionMamba (the authors' ``U2Net``); see the module docstring for structure and facts."""

    bands: int = 8
    guide_bands: int = 1
    ratio: int = 4
    dim: int = 32
    depth: int = 1
    d_state: int = 8
    d_conv: int = 4
    expand: int = 1
    variant: str = "420"
    scan_method: str = "associative"
    scan_chunk: int = 128
    scan_remat: bool = False
    scan_directions: str = "auto"
    remat_blocks: bool = False

    def _check(self, lrms: jax.Array, pan: jax.Array) -> None:
        for key, a in (("lrms", lrms), ("pan", pan)):
            if a.ndim != 4:
                raise InputError(f"fusionmamba: {key} must be NHWC (4-D), got shape {tuple(a.shape)}")
        if lrms.shape[-1] != self.bands:
            raise InputError(f"fusionmamba: model has {self.bands} bands but lrms has {lrms.shape[-1]}")
        if pan.shape[-1] != self.guide_bands:
            raise InputError(f"fusionmamba: model takes a {self.guide_bands}-band guide, pan has {pan.shape[-1]}")
        if lrms.shape[0] != pan.shape[0]:
            raise InputError(f"fusionmamba: batch sizes differ: lrms {lrms.shape[0]} vs pan {pan.shape[0]}")
        (h, w), (hh, ww), r = lrms.shape[1:3], pan.shape[1:3], self.ratio
        if (hh, ww) != (r * h, r * w):
            raise InputError(f"fusionmamba: pan {hh}x{ww} must be ratio {r} x lrms {h}x{w}")
        if hh % 4 or ww % 4:
            raise InputError(
                f"fusionmamba: pan {hh}x{ww}: height and width must be multiples of 4 "
                "(two 2x downsamplings in the U-Net); crop or pad the scene"
            )

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array | None = None, train: bool = False) -> jax.Array:
        del lms, train  # the network learns its own upsampling; no dropout or batch statistics
        self._check(lrms, pan)
        if self.variant not in VARIANTS:
            raise InputError(f"fusionmamba: variant must be one of {VARIANTS}, got {self.variant!r}")
        mamba = {
            "d_state": self.d_state,
            "d_conv": self.d_conv,
            "expand": self.expand,
            "scan_method": self.scan_method,
            "scan_chunk": self.scan_chunk,
            "scan_remat": self.scan_remat,
            "scan_directions": self.scan_directions,
        }
        c, r, d0, v = self.bands, self.ratio, self.dim, self.variant
        d1, d2 = 2 * d0, 4 * d0
        skip = pixel_shuffle(Conv2d(c * r * r, 3, padding=1, use_bias=False, name="upsample")(lrms), r)
        p = _leaky(Conv2d(d0, 3, padding=1, name="raise_pan_dim_0")(pan))
        m = _leaky(Conv2d(d0, 3, padding=1, name="raise_ms_dim_0")(skip))

        rb = self.remat_blocks
        p, m, p0, m0 = _Stage(d1, "down", mamba, self.depth, v, rb, name="stage0")(p, m)
        p, m, p1, m1 = _Stage(d2, "down", mamba, self.depth, v, rb, name="stage1")(p, m)
        p, m = _Stage(d1, "up", mamba, self.depth, v, rb, name="stage2")(p, m, p1, m1)
        p, m = _Stage(d0, "up", mamba, self.depth, v, rb, name="stage3")(p, m, p0, m0)
        out = FusionMambaBlock(mamba, self.depth, final=True, variant=v, remat=rb, name="stage4")(p, m)
        if v == "400":
            out = out[1]  # the MS stream, m + f

        detail = Conv2d(c, 3, padding=1, name="to_hrms_2")(_leaky(Conv2d(d0, 3, padding=1, name="to_hrms_0")(out)))
        if v == "420":
            detail = detail * SpectralGate(d0, mamba, name="spe_attn")(lrms)
        return detail + skip


# ---------------------------------------------------------------------------- registry


def fusionmamba_config() -> ml_collections.ConfigDict:
    """Published sizes (the released WV3 model, ``weights/420.pth``)."""
    return ml_collections.ConfigDict(
        {
            "name": "fusionmamba",
            "bands": 8,
            "guide_bands": 1,  # PAN; 3 for an RGB HR-MSI guide (MHIF)
            "ratio": 4,  # learned upsampler conv3x3(C -> ratio^2 C) + PixelShuffle(ratio)
            "dim": 32,
            "depth": 1,  # SingleMambaBlocks per stream in each FusionMamba block
            "d_state": 8,
            "d_conv": 4,
            "expand": 1,
            "variant": "420",  # '420' (released code) | '400' (May 2024 code of 400.pth)
            "scan_method": "auto",  # auto (CPU: sequential; else chunked + remat) | sequential | associative | chunked
            "scan_chunk": 128,  # tokens per chunk (chunked)
            "scan_remat": False,  # chunked: recompute chunk internals in reverse mode (less memory; on for auto)
            "remat_blocks": False,  # recompute each Mamba block in reverse mode (large training crops)
            "scan_directions": "auto",  # auto | batched | serial (the 2/4 scan directions; see Mamba)
        }
    )


resolve_auto_scan = _ss.resolve_training_scan  # ``scan_method='auto'`` (nn.selective_scan.resolve_training_scan)


def _pos_int(cfg: ml_collections.ConfigDict, key: str, default: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"model config 'fusionmamba': {key} must be a positive integer, got {value!r}")
    return int(value)


def _build(cfg: ml_collections.ConfigDict) -> FusionMamba:
    variant = str(cfg.get("variant", "420"))
    if variant not in VARIANTS:
        raise InputError(f"model config 'fusionmamba': variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    method = str(cfg.get("scan_method", "auto"))
    known = tuple(getattr(_ss, "METHODS", ("sequential", "associative", "chunked")))
    if method not in (*known, "auto"):
        raise InputError(
            f"model config 'fusionmamba': scan_method must be auto or one of {', '.join(known)}, got {method!r}"
        )
    scan_remat = bool(cfg.get("scan_remat", False))
    if method == "auto":  # resolved when the module is built, i.e. on the backend that runs it
        method, scan_remat = resolve_auto_scan(jax.default_backend(), scan_remat)
    directions = str(cfg.get("scan_directions", "auto"))
    if directions not in ("auto", "batched", "serial"):
        raise InputError(
            f"model config 'fusionmamba': scan_directions must be auto, batched or serial, got {directions!r}"
        )
    return FusionMamba(
        bands=_pos_int(cfg, "bands", 8),
        guide_bands=_pos_int(cfg, "guide_bands", 1),
        ratio=_pos_int(cfg, "ratio", 4),
        dim=_pos_int(cfg, "dim", 32),
        depth=_pos_int(cfg, "depth", 1),
        d_state=_pos_int(cfg, "d_state", 8),
        d_conv=_pos_int(cfg, "d_conv", 4),
        expand=_pos_int(cfg, "expand", 1),
        variant=variant,
        scan_method=method,
        scan_chunk=_pos_int(cfg, "scan_chunk", 128),
        scan_remat=scan_remat,
        remat_blocks=bool(cfg.get("remat_blocks", False)),
        scan_directions=directions,
    )


FUSIONMAMBA_ENTRY = ModelEntry(
    "fusionmamba",
    _build,
    fusionmamba_config,
    "FusionMamba (Peng et al. 2024): two-stream U-Net of 2-D Mambas with guide-driven cross Mambas",
)

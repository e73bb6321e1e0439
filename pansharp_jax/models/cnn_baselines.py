"""The standard CNN pan-sharpening baselines as Flax modules, equal to the DLPan-Toolbox ones.

PNN, PanNet, DiCNN, MSDCNN, DRPNN and FusionNet follow the PyTorch definitions of the
DLPan-Toolbox (``UDL/pansharpening/models``), whose authors released trained weights for
QB, WV2, WV3 and WV4 (import them with :mod:`pansharp_jax.models.convert`); LAGNet follows
the LAGConv reimplementation shipped with CANConv (no released weights). Layer and
parameter names mirror the PyTorch ones (``conv1``, ``res1/conv20``, ``backbone_3/conv2``,
...), so converting a state dict is a pure renaming plus layout change.

Every module honours the registry contract
``module.apply({'params': p}, lrms, pan, lms, train=False) -> hrms`` with NHWC float32
inputs on the [0, 1] scale (DN / (2**bits - 1)); the output has the PAN size and is not
clipped. ``train`` is accepted for the contract; none of these networks has dropout or
batch statistics.

============  ==========================================================  ==========  ==========
method        structure (C = bands)                                       params C=4  params C=8
============  ==========================================================  ==========  ==========
pnn           [LMS, PAN] -> 9x9 64, 5x5 32, 5x5 C (valid convs)               80,420     104,360
pannet        [deconv8x8/4(hp(MS)), hp(PAN)] -> 3x3 32, 4 res, 3x3 C          77,640      83,024
              (+ LMS)
dicnn         [LMS, PAN] -> 3x3 64, 3x3 64, 3x3 C (+ LMS)                     42,180      46,792
msdcnn        deep multi-scale branch + shallow 9x9/1x1/5x5 branch, ReLU     189,852     228,556
drpnn         [LMS, PAN] -> 7x7 32, 8 x 7x7 32, 7x7 C+1 (+ input), 7x7 C     418,365     433,465
fusionnet     PAN x C - LMS -> 3x3 32, 4 res, 3x3 C (+ LMS)                   76,324      78,632
lagnet        [PAN, LMS] -> LAGConv 32, 5 LAGConv res blocks, LAGConv C      148,457     151,397
              (+ LMS)
============  ==========================================================  ==========  ==========

The counts of the first six equal the unique parameter counts of the released QB/WV4
(4-band) and WV2/WV3 (8-band) checkpoints; "res" is two 3x3 32->32 convs with a ReLU
between and an identity skip.

Facts the published records leave open, and what this module does:

* Input scale. The toolbox divides every input by ``img_range`` = 2047 (11-bit data) before
  the network; that is exactly our [0, 1] convention, so the modules take [0, 1] data
  unchanged. ``lms`` is the toolbox's 23-tap interpolation of the MS (the PanCollection
  ``lms``). The toolbox clips the network output to [0, 1] before saving and scoring;
  the modules do not (contract), :func:`pansharp_jax.models.fuse` does with ``clip=True``.
* Input order. PNN, DiCNN, MSDCNN and DRPNN concatenate ``[LMS, PAN]`` (PAN last); LAGNet
  ``[PAN, LMS]`` (PAN first); FusionNet feeds ``PAN`` repeated C times minus ``LMS``.
* Residuals. DiCNN, PanNet, FusionNet and LAGNet add LMS to the network output; PNN,
  MSDCNN and DRPNN output the image directly (MSDCNN through a final ReLU, DRPNN after an
  inner skip from the (C+1)-band input).
* PNN full-size output. PNN's convs are unpadded (``VALID``: the output shrinks by
  sum(k - 1) = 16 pixels). As in the toolbox's test step, the module replicate-pads the
  concatenated input by ``sum(k - 1) // 2`` = 8 pixels on each side, so the output has the
  PAN size in training and at test. (The toolbox instead trains on unpadded 64x64 patches
  against the GT cropped by 8 pixels; with this module the same training is obtained by
  cropping 8 pixels of the output and of the GT in the loss.)
* PanNet high-pass. ``hp(x) = x - box5x5(x)``: a normalised 5x5 box mean with
  reflect-101 borders (OpenCV ``boxFilter`` defaults, as the toolbox's ``get_edge``),
  applied per band to the low-resolution MS and to the PAN inside the module. The MS
  branch upsamples with a learned ``ConvTranspose2d(C, C, 8, stride=4, padding=2)``, so
  PanNet needs PAN = 4 x MS (``ratio`` = 4; other even ratios change the deconv to
  ``2r x 2r``, stride r, padding r/2, and its parameter count).
* Convolution semantics equal PyTorch's: cross-correlation, zero padding ``(k - 1) / 2``
  ("same") except PNN's valid convs; the transposed conv scatters exactly as
  ``nn.ConvTranspose2d`` (kernels are stored as PyTorch's (in, out, kh, kw) transposed to
  (kh, kw, in, out); the layer flips them spatially).
* Initialisation. As the toolbox: PanNet's and DiCNN's convs use its variance-scaling
  initialiser (normal truncated to +-2, std sqrt(2.6 / fan_in), zero bias); every other
  layer (PNN, MSDCNN, DRPNN, FusionNet, PanNet's deconv, LAGNet) uses PyTorch's default
  (uniform +-1/sqrt(fan_in) for kernel and bias, fan_in of a transposed conv = out x k x k).
* LAGConv. Per pixel, 9 weights ``sigmoid(1x1(ReLU(1x1(ReLU(3x3 conv(x))))))`` shared over
  input channels scale the unfolded 3x3 patch, which a shared (3, 3, in, out) kernel (no
  bias) maps to the output; an image-wide bias ``1x1(ReLU(1x1(mean_HW(x))))`` is added.
* Precision. Convolutions use JAX's default precision: exact float32 on CPU (imported
  weights reproduce the PyTorch outputs to ~3e-6 on [0, 1]); on GPUs that default to TF32,
  wrap inference in ``jax.default_matmul_precision("highest")`` for the same agreement.

Sizes are configurable through the model config (e.g. narrower ``channels`` for tests);
the defaults are the published ones.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from pansharp_jax.errors import InputError
from pansharp_jax.models.registry import ModelEntry

_DN = ("NHWC", "HWIO", "NHWC")


# ---------------------------------------------------------------------------- initialisers


def udl_variance_scaling(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """The DLPan-Toolbox conv initialiser: N(0, 1) truncated to (-2, 2), times sqrt(2.6 / fan_in).

    ``shape`` is (kh, kw, in, out); fan_in = kh * kw * in.
    """
    fan_in = math.prod(shape[:-1])
    return jax.random.truncated_normal(key, -2.0, 2.0, tuple(shape), dtype) * math.sqrt(2.6 / fan_in)


def torch_default_uniform(fan_in: int) -> Any:
    """PyTorch's default conv initialiser for kernel and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, tuple(shape), dtype, -bound, bound)

    return init


# ---------------------------------------------------------------------------- layers


def _promote(*xs: jax.Array) -> list[jax.Array]:
    dtype = jnp.result_type(*xs)
    return [x.astype(dtype) for x in xs]


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` (stride 1, zero padding ``padding`` on every side) on NHWC.

    Params: ``kernel`` (k, k, in, out) = PyTorch weight (out, in, kh, kw) transposed
    (2, 3, 1, 0); ``bias`` (out,).
    """

    features: int
    kernel_size: int
    padding: int = 0
    init: str = "torch"  # "torch" (PyTorch default) or "udl" (toolbox variance scaling)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        if self.init == "udl":
            kernel_init, bias_init = udl_variance_scaling, nn.initializers.zeros_init()
        else:
            kernel_init = bias_init = torch_default_uniform(cin * k * k)
        kernel = self.param("kernel", kernel_init, (k, k, cin, self.features))
        bias = self.param("bias", bias_init, (self.features,))
        x, kernel, bias = _promote(x, kernel, bias)
        p = self.padding
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((p, p), (p, p)), dimension_numbers=_DN)
        return y + bias


class ConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d`` (square kernel, no output padding) on NHWC.

    Output size (h - 1) * stride - 2 * padding + kernel_size. Params: ``kernel``
    (k, k, in, out) = PyTorch weight (in, out, kh, kw) transposed (2, 3, 0, 1), unflipped
    (the layer flips it: a transposed conv is a correlation of the stride-dilated input,
    padded by k - 1 - padding, with the spatially flipped kernel); ``bias`` (out,).
    """

    features: int
    kernel_size: int
    stride: int
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, cin = self.kernel_size, self.stride, x.shape[-1]
        init = torch_default_uniform(self.features * k * k)  # PyTorch: fan_in = weight.size(1) * k * k
        kernel = self.param("kernel", init, (k, k, cin, self.features))
        bias = self.param("bias", init, (self.features,))
        x, kernel, bias = _promote(x, kernel, bias)
        q = k - 1 - self.padding
        y = jax.lax.conv_general_dilated(
            x, kernel[::-1, ::-1], (1, 1), ((q, q), (q, q)), lhs_dilation=(s, s), dimension_numbers=_DN
        )
        return y + bias


class ResBlock(nn.Module):
    """PanNet/FusionNet residual block: ``x + conv21(ReLU(conv20(x)))``, 3x3 same convs."""

    channels: int
    init: str = "torch"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        r = nn.relu(Conv2d(self.channels, 3, 1, self.init, name="conv20")(x))
        return x + Conv2d(self.channels, 3, 1, self.init, name="conv21")(r)


def _unfold_by_slicing(x: jax.Array, k: int) -> jax.Array:
    p = (k - 1) // 2
    h, w = x.shape[1], x.shape[2]
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    cols = jnp.stack([xp[:, i : i + h, j : j + w, :] for i in range(k) for j in range(k)], axis=-1)
    return cols.reshape(*x.shape[:3], x.shape[3] * k * k)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def unfold(x: jax.Array, k: int) -> jax.Array:
    """``torch.nn.functional.unfold`` (k x k, stride 1, zero padding (k - 1) / 2) on NHWC.

    (N, H, W, C) -> (N, H, W, C * k * k), channel-major (c, kh, kw). Computed with
    ``lax.conv_general_dilated_patches``; its derivative is taken through the equivalent
    shifted slices, whose transpose (pad and add) is ~6x faster on CPU than the transposed
    grouped convolution XLA would otherwise use.
    """
    p = (k - 1) // 2
    return jax.lax.conv_general_dilated_patches(
        x, (k, k), (1, 1), ((p, p), (p, p)), dimension_numbers=_DN, precision=jax.lax.Precision.HIGHEST
    )


@unfold.defjvp
def _unfold_jvp(k: int, primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    (x,), (dx,) = primals, tangents
    return unfold(x, k), _unfold_by_slicing(dx, k)


class LAGConv(nn.Module):
    """LAGConv2D (Jin et al., AAAI 2022): a local-adaptive conv plus a global adaptive bias.

    ``y[p] = sum_{c, t} a[p, t] x[p + t, c] W[t, c, :] + g``, t over the k x k offsets, with
    ``a = sigmoid(1x1(ReLU(1x1(ReLU(conv_kxk(x))))))`` (k*k weights per pixel, shared over
    channels) and ``g = 1x1(ReLU(1x1(mean_HW(x))))`` (one bias vector per image). Zero
    padding (k - 1) / 2. Param names follow the PyTorch module (``attention1_0`` =
    ``attention1.0``, ..., ``kernel`` = ``weight`` transposed to (k, k, in, out)).
    """

    features: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        kk, p = k * k, (k - 1) // 2
        a = nn.relu(Conv2d(kk, k, p, name="attention1_0")(x))
        a = nn.relu(Conv2d(kk, 1, 0, name="attention1_2")(a))
        a = nn.sigmoid(Conv2d(kk, 1, 0, name="attention1_4")(a))  # (N, H, W, k*k)
        kernel = self.param("kernel", torch_default_uniform(cin * kk), (k, k, cin, self.features))
        x, kernel, a = _promote(x, kernel, a)
        patches = unfold(x, k).reshape(*x.shape[:-1], cin, kk) * a[..., None, :]  # (N, H, W, cin, k*k)
        y = jnp.einsum("nhwct,tco->nhwo", patches, kernel.reshape(kk, cin, self.features))
        g = jnp.mean(x, axis=(1, 2), keepdims=True)
        g = nn.relu(Conv2d(self.features, 1, 0, name="attention3_1")(g))
        g = Conv2d(self.features, 1, 0, name="attention3_3")(g)
        return y + g


class LACRB(nn.Module):
    """LAGNet residual block: ``x + LAGConv(ReLU(LAGConv(x)))``."""

    channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        r = nn.relu(LAGConv(self.channels, name="conv1")(x))
        return x + LAGConv(self.channels, name="conv2")(r)


def box_highpass(x: jax.Array, size: int = 5) -> jax.Array:
    """``x - boxFilter(x, (size, size))`` per band, reflect-101 borders (the toolbox's ``get_edge``).

    x: (N, H, W, C) -> same shape.
    """
    r = size // 2
    if x.shape[-3] <= r or x.shape[-2] <= r:
        raise InputError(f"high-pass filter {size}x{size} needs images larger than {r}x{r}, got {x.shape[-3]}x{x.shape[-2]}")
    xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    s = jax.lax.reduce_window(xp, jnp.array(0, xp.dtype), jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), "VALID")
    return x - s / (size * size)


def check_model_inputs(name: str, bands: int, lrms: jax.Array, pan: jax.Array, lms: jax.Array) -> None:
    """InputError naming the problem unless lrms (N,h,w,C), pan (N,H,W,1), lms (N,H,W,C), C = bands."""
    shapes = {"lrms": lrms.shape, "pan": pan.shape, "lms": lms.shape}
    for key, shape in shapes.items():
        if len(shape) != 4:
            raise InputError(f"{name}: {key} must be NHWC (4-D), got shape {tuple(shape)}")
    if pan.shape[-1] != 1:
        raise InputError(f"{name}: pan must have 1 band, got {pan.shape[-1]}")
    if lrms.shape[-1] != bands or lms.shape[-1] != bands:
        raise InputError(f"{name}: model has {bands} bands but lrms has {lrms.shape[-1]} and lms {lms.shape[-1]}")
    if lms.shape[:3] != pan.shape[:3]:
        raise InputError(f"{name}: lms {tuple(lms.shape)} and pan {tuple(pan.shape)} differ in batch or size")
    if lrms.shape[0] != pan.shape[0]:
        raise InputError(f"{name}: batch sizes differ: lrms {lrms.shape[0]} vs pan {pan.shape[0]}")


# ---------------------------------------------------------------------------- networks


class PNN(nn.Module):
    """PNN (Masi et al. 2016): three valid convs on ``[LMS, PAN]``; input replicate-padded by 8."""

    bands: int
    channels: tuple[int, int] = (64, 32)
    kernel_sizes: tuple[int, int, int] = (9, 5, 5)

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del train
        check_model_inputs("pnn", self.bands, lrms, pan, lms)
        k1, k2, k3 = self.kernel_sizes
        total = (k1 - 1) + (k2 - 1) + (k3 - 1)
        lo, hi = total // 2, total - total // 2
        x = jnp.concatenate([lms, pan.astype(lms.dtype)], axis=-1)
        x = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)), mode="edge")
        x = nn.relu(Conv2d(self.channels[0], k1, 0, name="conv1")(x))
        x = nn.relu(Conv2d(self.channels[1], k2, 0, name="conv2")(x))
        return Conv2d(self.bands, k3, 0, name="conv3")(x)


class PanNet(nn.Module):
    """PanNet (Yang et al. 2017): high-pass domain, learned deconv upsampling, ResNet, + LMS."""

    bands: int
    channels: int = 32
    num_res_blocks: int = 4
    ratio: int = 4
    highpass_size: int = 5

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del train
        check_model_inputs("pannet", self.bands, lrms, pan, lms)
        r = self.ratio
        if pan.shape[1:3] != (r * lrms.shape[1], r * lrms.shape[2]):
            raise InputError(
                f"pannet: its learned deconv upsamples by ratio {r}, but pan is {pan.shape[1]}x{pan.shape[2]} "
                f"for lrms {lrms.shape[1]}x{lrms.shape[2]}"
            )
        ms_hp = box_highpass(lrms, self.highpass_size)
        pan_hp = box_highpass(pan.astype(lrms.dtype), self.highpass_size)
        up = ConvTranspose2d(self.bands, 2 * r, r, r // 2, name="deconv")(ms_hp)
        x = jnp.concatenate([up, pan_hp.astype(up.dtype)], -1)
        x = nn.relu(Conv2d(self.channels, 3, 1, "udl", name="conv1")(x))
        for i in range(self.num_res_blocks):
            x = ResBlock(self.channels, "udl", name=f"res{i + 1}")(x)
        return lms + Conv2d(self.bands, 3, 1, "udl", name="conv3")(x)


class DiCNN(nn.Module):
    """DiCNN1 (He et al. 2019): three 3x3 convs on ``[LMS, PAN]``, + LMS."""

    bands: int
    channels: int = 64

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del train
        check_model_inputs("dicnn", self.bands, lrms, pan, lms)
        x = jnp.concatenate([lms, pan.astype(lms.dtype)], axis=-1)
        x = nn.relu(Conv2d(self.channels, 3, 1, "udl", name="conv1")(x))
        x = nn.relu(Conv2d(self.channels, 3, 1, "udl", name="conv2")(x))
        return lms + Conv2d(self.bands, 3, 1, "udl", name="conv3")(x)


class MSDCNN(nn.Module):
    """MSDCNN (Yuan et al. 2018): deep multi-scale branch + shallow branch, summed, ReLU.

    Deep: 7x7 ``d0``; three parallel 3/5/7 convs of ``d0/3`` each, concatenated, + skip,
    ReLU; 3x3 ``d1``; three parallel 3/5/7 convs of ``d1/3``, + skip, ReLU; 5x5 -> C.
    Shallow: 9x9 ``s0``, ReLU, 1x1 ``s1``, ReLU, 5x5 -> C. Output ReLU(deep + shallow).
    """

    bands: int
    deep_channels: tuple[int, int] = (60, 30)
    shallow_channels: tuple[int, int] = (64, 32)

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del train
        check_model_inputs("msdcnn", self.bands, lrms, pan, lms)
        d0, d1 = self.deep_channels
        s0, s1 = self.shallow_channels
        x = jnp.concatenate([lms, pan.astype(lms.dtype)], axis=-1)

        def multiscale(h: jax.Array, width: int, prefix: str) -> jax.Array:
            outs = [Conv2d(width // 3, k, k // 2, name=f"{prefix}_{j + 1}")(h) for j, k in enumerate((3, 5, 7))]
            return nn.relu(jnp.concatenate(outs, -1) + h)

        out1 = nn.relu(Conv2d(d0, 7, 3, name="conv1")(x))
        out2 = multiscale(out1, d0, "conv2")
        out3 = nn.relu(Conv2d(d1, 3, 1, name="conv3")(out2))
        out4 = multiscale(out3, d1, "conv4")
        deep = Conv2d(self.bands, 5, 2, name="conv5")(out4)
        sh = nn.relu(Conv2d(s0, 9, 4, name="shallow1")(x))
        sh = nn.relu(Conv2d(s1, 1, 0, name="shallow2")(sh))
        shallow = Conv2d(self.bands, 5, 2, name="shallow3")(sh)
        return nn.relu(deep + shallow)


class _RepeatBlock(nn.Module):
    """DRPNN's repeated block: one k x k conv (named ``conv2`` as in PyTorch), ReLU applied outside."""

    channels: int
    kernel_size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return Conv2d(self.channels, self.kernel_size, self.kernel_size // 2, name="conv2")(x)


class DRPNN(nn.Module):
    """DRPNN (Wei et al. 2017): 7x7 convs, C+1-band inner residual, final 7x7 conv to C bands."""

    bands: int
    channels: int = 32
    num_blocks: int = 8
    kernel_size: int = 7

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del train
        check_model_inputs("drpnn", self.bands, lrms, pan, lms)
        k, p = self.kernel_size, self.kernel_size // 2
        inp = jnp.concatenate([lms, pan.astype(lms.dtype)], axis=-1)
        x = nn.relu(Conv2d(self.channels, k, p, name="conv1")(inp))
        for i in range(self.num_blocks):
            x = nn.relu(_RepeatBlock(self.channels, k, name=f"backbone_{i}")(x))
        x = inp + Conv2d(self.bands + 1, k, p, name="conv2")(x)
        return Conv2d(self.bands, k, p, name="conv3")(x)


class FusionNet(nn.Module):
    """FusionNet (Deng et al. 2021): ResNet on ``PAN x C - LMS``, + LMS."""

    bands: int
    channels: int = 32
    num_res_blocks: int = 4

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del train
        check_model_inputs("fusionnet", self.bands, lrms, pan, lms)
        x = pan.astype(lms.dtype) - lms  # PAN broadcast to C bands, minus LMS
        x = nn.relu(Conv2d(self.channels, 3, 1, name="conv1")(x))
        for i in range(self.num_res_blocks):
            x = ResBlock(self.channels, name=f"res{i + 1}")(x)
        return lms + Conv2d(self.bands, 3, 1, name="conv3")(x)


class LAGNet(nn.Module):
    """LAGNet (Jin et al. 2022): LAGConv head on ``[PAN, LMS]``, LAGConv residual blocks, + LMS."""

    bands: int
    channels: int = 32
    num_res_blocks: int = 5

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del train
        check_model_inputs("lagnet", self.bands, lrms, pan, lms)
        x = jnp.concatenate([pan.astype(lms.dtype), lms], axis=-1)
        x = nn.relu(LAGConv(self.channels, name="head_conv")(x))
        for i in range(self.num_res_blocks):
            x = LACRB(self.channels, name=f"RB{i + 1}")(x)
        return lms + LAGConv(self.bands, name="tail_conv")(x)


# ---------------------------------------------------------------------------- configs and registry entries


def _pos_int(cfg: ml_collections.ConfigDict, key: str, default: Any) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"model config '{cfg.get('name', '?')}': {key} must be a positive integer, got {value!r}")
    return int(value)


def _int_tuple(
    cfg: ml_collections.ConfigDict, key: str, default: tuple[int, ...], *, odd: bool = False, mult: int = 1
) -> tuple[int, ...]:
    value = cfg.get(key, default)
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"model config '{cfg.get('name', '?')}': {key} must be a tuple of integers, got {value!r}") from None
    bad = len(out) != len(default) or any(v < 1 or (odd and v % 2 == 0) or v % mult for v in out)
    if bad:
        what = f"{len(default)} positive" + (" odd" if odd else "") + (f" multiples of {mult}" if mult > 1 else " integers")
        raise InputError(f"model config '{cfg.get('name', '?')}': {key} must be {what}, got {value!r}")
    return out


def _config(name: str, bands: int = 8, **sizes: Any) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"name": name, "bands": bands, **sizes})


def pnn_config() -> ml_collections.ConfigDict:
    return _config("pnn", channels=(64, 32), kernel_sizes=(9, 5, 5))


def pannet_config() -> ml_collections.ConfigDict:
    return _config("pannet", channels=32, num_res_blocks=4, ratio=4, highpass_size=5)


def dicnn_config() -> ml_collections.ConfigDict:
    return _config("dicnn", channels=64)


def msdcnn_config() -> ml_collections.ConfigDict:
    return _config("msdcnn", deep_channels=(60, 30), shallow_channels=(64, 32))


def drpnn_config() -> ml_collections.ConfigDict:
    return _config("drpnn", channels=32, num_blocks=8, kernel_size=7)


def fusionnet_config() -> ml_collections.ConfigDict:
    return _config("fusionnet", channels=32, num_res_blocks=4)


def lagnet_config() -> ml_collections.ConfigDict:
    return _config("lagnet", channels=32, num_res_blocks=5)


def _build_pnn(cfg: ml_collections.ConfigDict) -> PNN:
    return PNN(
        bands=_pos_int(cfg, "bands", 8),
        channels=_int_tuple(cfg, "channels", (64, 32)),  # type: ignore[arg-type]
        kernel_sizes=_int_tuple(cfg, "kernel_sizes", (9, 5, 5), odd=True),  # type: ignore[arg-type]
    )


def _build_pannet(cfg: ml_collections.ConfigDict) -> PanNet:
    ratio = _pos_int(cfg, "ratio", 4)
    if ratio % 2:
        raise InputError(f"model config 'pannet': ratio must be even (deconv 2r x 2r, stride r, padding r/2), got {ratio}")
    hp = _pos_int(cfg, "highpass_size", 5)
    if hp % 2 == 0:
        raise InputError(f"model config 'pannet': highpass_size must be odd, got {hp}")
    return PanNet(
        bands=_pos_int(cfg, "bands", 8),
        channels=_pos_int(cfg, "channels", 32),
        num_res_blocks=_pos_int(cfg, "num_res_blocks", 4),
        ratio=ratio,
        highpass_size=hp,
    )


def _build_dicnn(cfg: ml_collections.ConfigDict) -> DiCNN:
    return DiCNN(bands=_pos_int(cfg, "bands", 8), channels=_pos_int(cfg, "channels", 64))


def _build_msdcnn(cfg: ml_collections.ConfigDict) -> MSDCNN:
    return MSDCNN(
        bands=_pos_int(cfg, "bands", 8),
        deep_channels=_int_tuple(cfg, "deep_channels", (60, 30), mult=3),  # type: ignore[arg-type]
        shallow_channels=_int_tuple(cfg, "shallow_channels", (64, 32)),  # type: ignore[arg-type]
    )


def _build_drpnn(cfg: ml_collections.ConfigDict) -> DRPNN:
    k = _pos_int(cfg, "kernel_size", 7)
    if k % 2 == 0:
        raise InputError(f"model config 'drpnn': kernel_size must be odd, got {k}")
    return DRPNN(
        bands=_pos_int(cfg, "bands", 8),
        channels=_pos_int(cfg, "channels", 32),
        num_blocks=_pos_int(cfg, "num_blocks", 8),
        kernel_size=k,
    )


def _build_fusionnet(cfg: ml_collections.ConfigDict) -> FusionNet:
    return FusionNet(
        bands=_pos_int(cfg, "bands", 8),
        channels=_pos_int(cfg, "channels", 32),
        num_res_blocks=_pos_int(cfg, "num_res_blocks", 4),
    )


def _build_lagnet(cfg: ml_collections.ConfigDict) -> LAGNet:
    return LAGNet(
        bands=_pos_int(cfg, "bands", 8),
        channels=_pos_int(cfg, "channels", 32),
        num_res_blocks=_pos_int(cfg, "num_res_blocks", 5),
    )


PNN_ENTRY = ModelEntry("pnn", _build_pnn, pnn_config, "PNN (Masi et al. 2016): 3 valid convs on [LMS, PAN]")
PANNET_ENTRY = ModelEntry("pannet", _build_pannet, pannet_config, "PanNet (Yang et al. 2017): high-pass ResNet + LMS")
DICNN_ENTRY = ModelEntry("dicnn", _build_dicnn, dicnn_config, "DiCNN1 (He et al. 2019): 3 convs on [LMS, PAN] + LMS")
MSDCNN_ENTRY = ModelEntry(
    "msdcnn", _build_msdcnn, msdcnn_config, "MSDCNN (Yuan et al. 2018): multi-scale deep + shallow branches"
)
DRPNN_ENTRY = ModelEntry("drpnn", _build_drpnn, drpnn_config, "DRPNN (Wei et al. 2017): deep residual 7x7 PNN")
FUSIONNET_ENTRY = ModelEntry(
    "fusionnet", _build_fusionnet, fusionnet_config, "FusionNet (Deng et al. 2021): ResNet on PAN - LMS, + LMS"
)
LAGNET_ENTRY = ModelEntry("lagnet", _build_lagnet, lagnet_config, "LAGNet (Jin et al. 2022): local-adaptive convs + LMS")

ENTRIES: dict[str, ModelEntry] = {
    e.name: e for e in (PNN_ENTRY, PANNET_ENTRY, DICNN_ENTRY, MSDCNN_ENTRY, DRPNN_ENTRY, FUSIONNET_ENTRY, LAGNET_ENTRY)
}

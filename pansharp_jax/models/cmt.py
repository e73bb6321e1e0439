"""CMT, the Cross Modulation Transformer for pan-sharpening (Shu et al., IEEE GRSL 2024).

Paper: W.-J. Shu, H.-X. Dou, R. Wen, X. Wu, L.-J. Deng, "CMT: Cross Modulation Transformer
with Hybrid Loss for Pansharpening", IEEE GRSL 21, 2024, arXiv:2404.01121. Trained with the
hybrid spatial + Fourier + wavelet loss (``config.loss = "hybrid"``, see
:mod:`pansharp_jax.train.losses`).

Registry contract: ``module.apply({'params': p}, lrms, pan, lms, train=False) -> hrms`` with
lrms (N, h, w, C), pan (N, H, W, 1), lms (N, H, W, C), float32 on [0, 1]; output
(N, H, W, C) on the same scale, not clipped. No layer depends on the image size (the
attention is over channels, the convolutions are "same"), so the same params run on 64 x 64
patches and on whole scenes of any H x W (no padding, no window multiple).

Structure (the three phases the paper describes; C = bands, D = ``channels``):

1. Feature extraction, one branch per modality:
   PAN (H, W, 1) -> conv3x3 D -> LeakyReLU(0.2) -> conv3x3 D;  LMS (H, W, C) -> the same.
2. Modulation: ``num_blocks`` Cross Modulation Attention Blocks (CMAB). Each block updates
   both streams from the streams it receives, once with PAN as the carrier and MS as the
   modulator, once the other way round (separate weights)::

       x_c <- x_c + Proj(CMA(LN(x_c), LN(x_m)))
       x_c <- x_c + GDFN(LN(x_c))

   CMA (cross modulation attention), with ``heads`` heads of D / heads channels:
   ``Q, K, V = DW3x3(Conv1x1(LN(x_c)))`` (the carrier), ``M = DW3x3(Conv1x1(LN(x_m)))``
   (the modulator), the value modulated by the modulator,
   ``V' = V * M`` (``modulation='dsb'``, double-side-band: product of carrier and
   modulator) or ``V' = V * (1 + M)`` (``'am'``, DSB with carrier) or ``V' = V``
   (``'none'``, plain self-attention, for ablations); then transposed (channel)
   attention ``softmax(T * Qn Kn^T) V'`` per head, with Qn, Kn L2-normalised over the
   pixels and a learned temperature T per head (init 1). GDFN: gated depthwise feed-forward,
   ``Conv1x1(GELU(a) * b)``, ``[a, b] = DW3x3(Conv1x1(x, 2 F))``, F = ffn_expansion * D.
   LN is a per-pixel LayerNorm over channels (eps 1e-5).
3. Aggregation: ``[x_pan, x_ms]`` -> conv3x3 D -> LeakyReLU(0.2) -> ``num_res_blocks``
   residual blocks (conv3x3 - ReLU - conv3x3, identity skip) -> conv3x3 C; + LMS.

The official code (github WenjieShu/CMT) could not be obtained when this module was
written, so everything below the paper's three-phase description (PAN/MS extraction,
CMABs modulating the carrier's V by the modulator, conv + residual aggregation) is a
documented guess: the modulation formula (config ``modulation``), the channel-wise
(Restormer-style) attention layout, the Q/K/V/M projections, the feed-forward, the
feature-extraction and aggregation convs, the LeakyReLU slope (these fixed in code), and the
sizes (config fields)
(``channels=32, num_blocks=4, heads=4, ffn_expansion=2, num_res_blocks=2``; 193,640
parameters for 8 bands, 191,332 for 4). Initialisation: Flax defaults (LeCun normal
kernels, zero biases), not PyTorch's.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from pansharp_jax.errors import InputError
from pansharp_jax.models.cnn_baselines import check_model_inputs
from pansharp_jax.models.registry import ModelEntry

MODULATIONS = ("dsb", "am", "none")


def _conv(features: int, k: int, name: str) -> nn.Conv:
    return nn.Conv(features, (k, k), padding="SAME", name=name)


class DWConv3x3(nn.Module):
    """Depthwise 3x3 conv, zero "same" padding, (N, H, W, D) -> (N, H, W, D).

    Params as ``nn.Conv(D, (3, 3), feature_group_count=D)``: ``kernel`` (3, 3, 1, D), ``bias``
    (D,); computed as nine shifted multiply-adds (several times faster than a grouped conv
    on CPU, equal results).
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, 1, d))
        bias = self.param("bias", nn.initializers.zeros_init(), (d,))
        h, w = x.shape[-3], x.shape[-2]
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = bias.astype(x.dtype)
        for i in range(3):
            for j in range(3):
                out = out + xp[:, i : i + h, j : j + w, :] * kernel[i, j, 0]
        return out


class GDFN(nn.Module):
    """Gated depthwise feed-forward on (N, H, W, D) -> (N, H, W, D)."""

    channels: int
    expansion: float = 2.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = max(1, int(self.channels * self.expansion))
        y = _conv(2 * hidden, 1, "project_in")(x)
        y = DWConv3x3(name="dwconv")(y)
        a, b = jnp.split(y, 2, axis=-1)
        return _conv(self.channels, 1, "project_out")(nn.gelu(a, approximate=False) * b)


class CrossModulationAttention(nn.Module):
    """Channel attention of the carrier with its value modulated by the modulator.

    ``carrier``, ``modulator``: (N, H, W, D) (already layer-normalised) -> (N, H, W, D).
    """

    channels: int
    heads: int = 4
    modulation: str = "dsb"

    @nn.compact
    def __call__(self, carrier: jax.Array, modulator: jax.Array) -> jax.Array:
        d, nh = self.channels, self.heads
        n, h, w, _ = carrier.shape
        qkv = _conv(3 * d, 1, "qkv")(carrier)
        qkv = DWConv3x3(name="qkv_dwconv")(qkv)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        if self.modulation != "none":
            m = _conv(d, 1, "mod")(modulator)
            m = DWConv3x3(name="mod_dwconv")(m)
            v = v * m if self.modulation == "dsb" else v * (1.0 + m)

        def heads(t: jax.Array) -> jax.Array:  # (N, H, W, D) -> (N, heads, D/heads, HW)
            return t.reshape(n, h * w, nh, d // nh).transpose(0, 2, 3, 1)

        q, k, v = heads(q), heads(k), heads(v)
        q = q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
        k = k / jnp.maximum(jnp.linalg.norm(k, axis=-1, keepdims=True), 1e-12)
        temperature = self.param("temperature", nn.initializers.ones, (nh, 1, 1))
        attn = jax.nn.softmax(jnp.einsum("bhcp,bhdp->bhcd", q, k) * temperature, axis=-1)
        out = jnp.einsum("bhcd,bhdp->bhcp", attn, v)  # (N, heads, D/heads, HW)
        out = out.transpose(0, 3, 1, 2).reshape(n, h, w, d)
        return _conv(d, 1, "project_out")(out)


class CMABranch(nn.Module):
    """One direction of a CMAB: the carrier stream updated under the modulator."""

    channels: int
    heads: int = 4
    ffn_expansion: float = 2.0
    modulation: str = "dsb"

    @nn.compact
    def __call__(self, carrier: jax.Array, modulator: jax.Array) -> jax.Array:
        x = carrier + CrossModulationAttention(self.channels, self.heads, self.modulation, name="attn")(
            nn.LayerNorm(epsilon=1e-5, name="norm_carrier")(carrier),
            nn.LayerNorm(epsilon=1e-5, name="norm_modulator")(modulator),
        )
        return x + GDFN(self.channels, self.ffn_expansion, name="ffn")(nn.LayerNorm(epsilon=1e-5, name="norm_ffn")(x))


class CMAB(nn.Module):
    """Cross Modulation Attention Block: (pan, ms) features (N, H, W, D) -> updated (pan, ms)."""

    channels: int
    heads: int = 4
    ffn_expansion: float = 2.0
    modulation: str = "dsb"

    @nn.compact
    def __call__(self, pan: jax.Array, ms: jax.Array) -> tuple[jax.Array, jax.Array]:
        kw = {"channels": self.channels, "heads": self.heads, "ffn_expansion": self.ffn_expansion}
        new_pan = CMABranch(**kw, modulation=self.modulation, name="pan_by_ms")(pan, ms)
        new_ms = CMABranch(**kw, modulation=self.modulation, name="ms_by_pan")(ms, pan)
        return new_pan, new_ms


class ResBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3 with an identity skip, (N, H, W, D) -> same."""

    channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(_conv(self.channels, 3, "conv1")(x))
        return x + _conv(self.channels, 3, "conv2")(y)


class CMT(nn.Module):
    """CMT: PAN / MS feature extraction, ``num_blocks`` CMABs, conv + residual aggregation, + LMS."""

    bands: int
    channels: int = 32
    num_blocks: int = 4
    heads: int = 4
    ffn_expansion: float = 2.0
    num_res_blocks: int = 2
    modulation: str = "dsb"

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        """lrms (N, h, w, C), pan (N, H, W, 1), lms (N, H, W, C) on [0, 1] -> (N, H, W, C)."""
        del train  # no dropout or batch statistics
        check_model_inputs("cmt", self.bands, lrms, pan, lms)
        d = self.channels
        pan = pan.astype(lms.dtype)

        def extract(x: jax.Array, prefix: str) -> jax.Array:
            x = nn.leaky_relu(_conv(d, 3, f"{prefix}_conv1")(x), 0.2)
            return _conv(d, 3, f"{prefix}_conv2")(x)

        fp, fm = extract(pan, "pan"), extract(lms, "ms")
        for i in range(self.num_blocks):
            fp, fm = CMAB(d, self.heads, self.ffn_expansion, self.modulation, name=f"cmab{i + 1}")(fp, fm)
        x = jnp.concatenate([fp, fm], axis=-1)
        x = nn.leaky_relu(_conv(d, 3, "fuse_conv")(x), 0.2)
        for i in range(self.num_res_blocks):
            x = ResBlock(d, name=f"res{i + 1}")(x)
        return lms + _conv(self.bands, 3, "out_conv")(x)


def cmt_config() -> ml_collections.ConfigDict:
    """The CMT model config (sizes are this module's guesses, see the module docstring)."""
    return ml_collections.ConfigDict(
        {
            "name": "cmt",
            "bands": 8,
            "channels": 32,
            "num_blocks": 4,
            "heads": 4,
            "ffn_expansion": 2.0,
            "num_res_blocks": 2,
            "modulation": "dsb",
        }
    )


def _pos_int(cfg: ml_collections.ConfigDict, key: str, default: Any, minimum: int = 1) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"model config 'cmt': {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _build_cmt(cfg: ml_collections.ConfigDict) -> CMT:
    channels, heads = _pos_int(cfg, "channels", 32), _pos_int(cfg, "heads", 4)
    if channels % heads:
        raise InputError(f"model config 'cmt': channels ({channels}) must be a multiple of heads ({heads})")
    modulation = str(cfg.get("modulation", "dsb")).lower()
    if modulation not in MODULATIONS:
        raise InputError(f"model config 'cmt': modulation must be one of {MODULATIONS}, got {modulation!r}")
    expansion = float(cfg.get("ffn_expansion", 2.0))
    if not expansion > 0:
        raise InputError(f"model config 'cmt': ffn_expansion must be > 0, got {expansion}")
    return CMT(
        bands=_pos_int(cfg, "bands", 8),
        channels=channels,
        num_blocks=_pos_int(cfg, "num_blocks", 4, minimum=0),
        heads=heads,
        ffn_expansion=expansion,
        num_res_blocks=_pos_int(cfg, "num_res_blocks", 2, minimum=0),
        modulation=modulation,
    )


CMT_ENTRY = ModelEntry(
    "cmt", _build_cmt, cmt_config, "CMT (Shu et al. 2024): cross modulation attention blocks + hybrid loss, + LMS"
)

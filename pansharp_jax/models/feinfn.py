"""FeINFN: Fourier-enhanced implicit neural fusion for MHIF (spatial + frequency INR, SFID decoder).

Paper: Y.-J. Liang, Z. Cao, S. Deng, H.-X. Dou, L.-J. Deng, "Fourier-enhanced Implicit Neural
Fusion Network for Multispectral and Hyperspectral Image Fusion", NeurIPS 2024,
arXiv:2404.15174; the structure follows ``specs/methods/feinfn.md`` (written from the paper and
the authors' code description; no code copied).

Registry contract (MHIF) as :mod:`pansharp_jax.models.infn`: ``apply({'params': p}, lrms, pan,
lms, train=False, scale=None) -> hrms``, lrms (N, h, w, B) LR-HSI, pan (N, H, W, K) HR-MSI guide,
lms (N, H, W, B) bicubic-upsampled LR-HSI, float32 on [0, 1]; output (N, Ho, Wo, B), (Ho, Wo) the
guide's grid or ``output_size(h, w, scale)`` (base then the bicubic resize of ``lrms``).

Structure (F = ``feats``, D = ``spatial_dim``; q runs over the output pixels, j over the 4
LIIF neighbour cells of q on the LR grid, rel_j = (q - centre_j) * (h, w))::

    hr = EDSR(concat[pan, lms])  (N, H, W, F);   z = EDSR(lrms)  (N, h, w, F);   hp = highpass(z)
    spatial IFF:   o_j = MLP_s([z_j, hr(q), hp_j, rel_j]) -> D + 1;   s_q = sum_j softmax_j(logit) o_j
    frequency IFF: Z = FFT2(z), G = FFT2(hr) over (H, W), per channel
        amplitude: a_j = MLP_a([|Z|_j, |G|(q), rel_j]) -> D + 1;       A_q = softmax-weighted a_j
        phase:     p_j = MLP_P([angle(Z)_j, angle(G)(q), rel_j]) -> D + 1 on the output grid;
                   P_q = softmax-weighted p_j;  MLP_P layer = Dense (1x1 conv) -> depthwise 3x3
                   conv (no bias) -> ReLU, then a final Dense
        f = |iFFT2(A e^{iP})| over the output grid                               (N, Ho, Wo, D)
    SFID decoder (``decoder_layers`` L, width W):
        k_0 = ReLU(Dense(s)),  k_l = ReLU(Dense([x_{l-1}, s]))                  (K path, spatial)
        x_l = Re(k_l * psi_l(Dense(f)))                                          (Q path, frequency)
        out = Dense_B(x_{L-1});   hrms = base + out
    psi(u) = exp(i omega0 u - |s0 u|^2)   complex Gabor wavelet, omega0, s0 trainable scalars

Queries of a spectrum at HR coordinates are nearest-neighbour resamplings of the spectrum
array as stored (DC at index 0, no fftshift), as for image features. The guide's spectrum is
read at q by nearest sampling too (the identity on its own grid).

Choices the paper leaves open (config fields, default first):

* ``fft_norm``: ``"backward"`` (unnormalised forward FFT, 1/N inverse: the PyTorch / NumPy
  default the code uses), ``"ortho"`` or ``"forward"``. With ``"backward"`` spectrum
  magnitudes grow with the image size, so features on whole scenes differ in scale from those
  on training patches.
* ``omega0`` 30 and ``s0`` 10 initial values, one trainable pair per decoder layer (WIRE's
  values; "per layer" is our reading). The Q path of every layer reads the frequency feature
  f (the K path carries the layer-to-layer state).
* ``q_init``: the Q-path Dense kernels start as SIREN's hidden layers scaled by the Gabor
  frequency, U(+-sqrt(6 / fan_in) / omega0) (WIRE's practice), so that ``s0 u`` is O(1) and
  the wavelet is not ~0 everywhere at initialisation; ``"lecun"`` is Flax's default.
* Amplitude and phase magnitudes use a zero-safe |.| and angle (gradient 0 at exactly 0).
* The code's additive sinusoidal table on ``rel`` (d_model 2) is left out; ``cell_decode``
  (LIIF's cell input) is off.
* Sizes: ``feats`` 128, ``blocks`` 4, ``spatial_dim`` 32, MLPs (256, 128), decoder 3 x 128,
  ``highpass`` as INFN. Initialisation: Flax defaults (LeCun normal, zero biases) but ``q_init``
  and the decoder's output layer, zero-initialised (``zero_out``: the network starts as the base).
* Loss: the official L1 + SSIM is not in the trainer; the configs train with L1.

``query_chunk`` > 0 decodes the spatial and amplitude queries in chunks (the phase branch, the
inverse FFT and the decoder work on whole grids).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from pansharp_jax.errors import InputError
from pansharp_jax.models.infn import (
    HIGHPASS_KERNELS,
    EDSRBaseline,
    INFNQuery,
    base_image,
    check_mhif_inputs,
    choice,
    highpass,
    positive_ints,
    query_grid,
    run_queries,
)
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn import inr

FFT_NORMS = ("backward", "ortho", "forward")


def gabor(u: jax.Array, omega0: Any, s0: Any) -> jax.Array:
    """Complex Gabor wavelet ``exp(i omega0 u - |s0 u|^2)`` of real ``u`` (any shape), complex64."""
    u = jnp.asarray(u, jnp.float32)
    return jnp.exp(1j * omega0 * u - jnp.square(jnp.abs(s0 * u))).astype(jnp.complex64)


def _safe_abs(re: jax.Array, im: jax.Array) -> jax.Array:
    sq = re * re + im * im
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def amplitude_phase(x: jax.Array, norm: str = "backward") -> tuple[jax.Array, jax.Array]:
    """(|F|, angle(F)) of ``F = FFT2(x)`` over H, W of real (N, H, W, C): two float32 (N, H, W, C)."""
    spec = jnp.fft.fft2(x.astype(jnp.float32), axes=(1, 2), norm=norm)
    re, im = jnp.real(spec), jnp.imag(spec)
    zero = (re == 0) & (im == 0)
    return _safe_abs(re, im), jnp.arctan2(im, jnp.where(zero, 1.0, re))


def from_amplitude_phase(amp: jax.Array, phase: jax.Array, norm: str = "backward") -> jax.Array:
    """``|iFFT2(amp e^{i phase})|`` over H, W of (N, H, W, C): float32 (N, H, W, C)."""
    amp, phase = amp.astype(jnp.float32), phase.astype(jnp.float32)  # no bf16 complex / FFT in XLA
    spec = jax.lax.complex(amp * jnp.cos(phase), amp * jnp.sin(phase))
    out = jnp.fft.ifft2(spec, axes=(1, 2), norm=norm)
    return _safe_abs(jnp.real(out), jnp.imag(out))


class AmplitudeQuery(nn.Module):
    """One chunk of amplitude queries: ``(carry, coords (N, q, 2), amp_lr (N, h, w, F), amp_hr
    (N, H, W, F)) -> (carry, (N, q, out_dim))``, a logit-softmax local ensemble."""

    out_dim: int
    hidden: tuple[int, ...] = (256, 128)

    @nn.compact
    def __call__(self, carry: Any, coords: jax.Array, amp_lr: jax.Array, amp_hr: jax.Array) -> tuple[Any, jax.Array]:
        nb = inr.local_neighbours(amp_lr, coords)
        g = inr.sample_nearest(amp_hr, coords)
        x = jnp.concatenate([nb.feats, jnp.broadcast_to(g[None], nb.feats.shape[:-1] + g.shape[-1:]), nb.rel], axis=-1)
        preds = inr.MLP(tuple(self.hidden), self.out_dim + 1, name="mlp")(x)
        return carry, inr.ensemble(preds[..., : self.out_dim], jax.nn.softmax(preds[..., -1], axis=0))


class PhaseMLP(nn.Module):
    """MLP_P on (M, Ho, Wo, Cin) maps: per hidden width Dense -> depthwise 3x3 (no bias) -> ReLU; Dense(out)."""

    out_dim: int
    hidden: tuple[int, ...] = (256, 128)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = nn.Dense(int(width), name=f"dense_{i}")(x)
            x = nn.Conv(int(width), (3, 3), padding="SAME", feature_group_count=int(width), use_bias=False, name=f"dw_{i}")(x)
            x = nn.relu(x)
        return nn.Dense(self.out_dim, name="out")(x)


class FrequencyIFF(nn.Module):
    """Frequency implicit fusion: (z (N, h, w, F), hr (N, H, W, F), coords (N, Q, 2), size) ->
    f (N, Q, out_dim), ``|iFFT2(A e^{iP})|`` on the (Ho, Wo) output grid (module docstring)."""

    out_dim: int = 32
    amp_hidden: tuple[int, ...] = (256, 128)
    phase_hidden: tuple[int, ...] = (256, 128)
    fft_norm: str = "backward"
    query_chunk: int = 0

    @nn.compact
    def __call__(self, z: jax.Array, hr: jax.Array, coords: jax.Array, size: tuple[int, int]) -> jax.Array:
        n = z.shape[0]
        amp_lr, pha_lr = amplitude_phase(z, self.fft_norm)
        amp_hr, pha_hr = amplitude_phase(hr, self.fft_norm)
        self.sow("intermediates", "amp_lr", amp_lr)
        self.sow("intermediates", "pha_hr", pha_hr)
        amp = run_queries(
            AmplitudeQuery, "amplitude", self.query_chunk, coords, amp_lr, amp_hr, out_dim=self.out_dim,
            hidden=tuple(self.amp_hidden),
        )  # fmt: skip
        nb = inr.local_neighbours(pha_lr, coords)  # (4, N, Q, F)
        g = inr.sample_nearest(pha_hr, coords)
        x = jnp.concatenate([nb.feats, jnp.broadcast_to(g[None], nb.feats.shape[:-1] + g.shape[-1:]), nb.rel], axis=-1)
        maps = x.reshape(4 * n, *size, x.shape[-1])
        p = PhaseMLP(self.out_dim + 1, tuple(self.phase_hidden), name="phase")(maps).reshape(4, n, -1, self.out_dim + 1)
        phase = inr.ensemble(p[..., : self.out_dim], jax.nn.softmax(p[..., -1], axis=0))
        amp_map, phase_map = amp.reshape(n, *size, self.out_dim), phase.reshape(n, *size, self.out_dim)
        self.sow("intermediates", "amp_q", amp_map)
        self.sow("intermediates", "phase_q", phase_map)
        f = from_amplitude_phase(amp_map, phase_map, self.fft_norm)
        self.sow("intermediates", "frequency", f)
        return f.reshape(n, -1, self.out_dim)


def _siren_init(omega0: float) -> Any:
    """SIREN's hidden-layer init scaled by the Gabor frequency: U(+-sqrt(6 / fan_in) / omega0)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        bound = (6.0 / shape[0]) ** 0.5 / omega0
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class SFID(nn.Module):
    """Spatial-frequency interactive decoder: (s (..., D), f (..., D)) -> (..., out_dim) (module docstring)."""

    out_dim: int
    width: int = 128
    layers: int = 3
    omega0: float = 30.0
    s0: float = 10.0
    q_init: str = "siren"
    zero_out: bool = True

    @nn.compact
    def __call__(self, s: jax.Array, f: jax.Array) -> jax.Array:
        x = None
        for i in range(self.layers):
            k = nn.relu(nn.Dense(self.width, name=f"k_{i}")(s if x is None else jnp.concatenate([x, s], axis=-1)))
            init = _siren_init(self.omega0) if self.q_init == "siren" else nn.initializers.lecun_normal()
            u = nn.Dense(self.width, kernel_init=init, name=f"q_{i}")(f)
            omega = self.param(f"omega_{i}", nn.initializers.constant(self.omega0), ())
            scale = self.param(f"s0_{i}", nn.initializers.constant(self.s0), ())
            x = jnp.real(k.astype(jnp.complex64) * gabor(u, omega, scale))
        init = nn.initializers.zeros if self.zero_out else nn.initializers.lecun_normal()
        return nn.Dense(self.out_dim, kernel_init=init, name="out")(s if x is None else x)


class FeINFN(nn.Module):
    """FeINFN for MHIF (module docstring): ``(lrms, pan, lms, train=False, scale=None) -> hrms``."""

    bands: int = 31
    guide_bands: int = 3
    feats: int = 128
    blocks: int = 4
    spatial_dim: int = 32
    spatial_hidden: tuple[int, ...] = (256, 128)
    amp_hidden: tuple[int, ...] = (256, 128)
    phase_hidden: tuple[int, ...] = (256, 128)
    decoder_width: int = 128
    decoder_layers: int = 3
    omega0: float = 30.0
    s0: float = 10.0
    highpass: str = "efficient_mif"
    fft_norm: str = "backward"
    q_init: str = "siren"
    zero_out: bool = True
    cell_decode: bool = False
    query_chunk: int = 65536

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False, scale: Any = None) -> jax.Array:
        """lrms (N, h, w, B), pan (N, H, W, K), lms (N, H, W, B) -> (N, Ho, Wo, B) on [0, 1], not clipped."""
        del train
        check_mhif_inputs("feinfn", self.bands, self.guide_bands, lrms, pan, lms)
        hr = EDSRBaseline(self.feats, self.blocks, name="spatial_encoder")(jnp.concatenate([pan, lms], axis=-1))
        z = EDSRBaseline(self.feats, self.blocks, name="spectral_encoder")(lrms)
        coords, cell, size = query_grid(lrms.shape, pan.shape, scale)
        coords = jnp.broadcast_to(coords, (lrms.shape[0], *coords.shape))
        lr_cat = jnp.concatenate([z, highpass(z, self.highpass)], axis=-1)
        s = run_queries(
            INFNQuery, "spatial_iff", self.query_chunk, coords, cell, lr_cat, hr, out_dim=self.spatial_dim,
            hidden=tuple(self.spatial_hidden), weighting="logit", cell_decode=self.cell_decode,
        )  # fmt: skip
        f = FrequencyIFF(
            self.spatial_dim, tuple(self.amp_hidden), tuple(self.phase_hidden), self.fft_norm, self.query_chunk,
            name="frequency_iff",
        )(z, hr, coords, size)  # fmt: skip
        out = SFID(
            self.bands, self.decoder_width, self.decoder_layers, self.omega0, self.s0, self.q_init, self.zero_out,
            name="decoder",
        )(s, f)
        return base_image(lrms, lms, size) + out.reshape(lrms.shape[0], *size, self.bands)


# ----------------------------------------------------------------------------- config / registry


def feinfn_config() -> ml_collections.ConfigDict:
    """Model config of FeINFN (the code defaults described in ``specs/methods/feinfn.md``)."""
    return ml_collections.ConfigDict(
        {
            "name": "feinfn",
            "bands": 31,
            "guide_bands": 3,  # HR-MSI bands (RGB)
            "feats": 128,
            "blocks": 4,
            "spatial_dim": 32,
            "spatial_hidden": (256, 128),
            "amp_hidden": (256, 128),
            "phase_hidden": (256, 128),
            "decoder_width": 128,
            "decoder_layers": 3,
            "omega0": 30.0,  # initial Gabor frequency (trainable)
            "s0": 10.0,  # initial Gabor scale (trainable)
            "highpass": "efficient_mif",  # 'efficient_mif' | 'laplacian'
            "fft_norm": "backward",  # 'backward' | 'ortho' | 'forward'
            "q_init": "siren",  # Q-path kernels: 'siren' (U(+-sqrt(6/fan_in)/omega0)) | 'lecun'
            "zero_out": True,  # zero-initialised decoder output: the network starts as the bicubic base
            "cell_decode": False,
            "query_chunk": 65536,  # queries per decoding chunk (0 = all at once)
        }
    )


def build_feinfn(cfg: ml_collections.ConfigDict | dict[str, Any]) -> FeINFN:
    """The :class:`FeINFN` module of a model config (:func:`feinfn_config`)."""
    get = cfg.get
    sizes = positive_ints(
        "feinfn", bands=get("bands", 31), guide_bands=get("guide_bands", 3), feats=get("feats", 128),
        spatial_dim=get("spatial_dim", 32), decoder_width=get("decoder_width", 128), decoder_layers=get("decoder_layers", 3),
    )  # fmt: skip
    widths = {k: tuple(int(v) for v in get(k, (256, 128))) for k in ("spatial_hidden", "amp_hidden", "phase_hidden")}
    if any(v < 1 for w in widths.values() for v in w) or int(get("blocks", 4)) < 0 or int(get("query_chunk", 0)) < 0:
        raise InputError("model config 'feinfn': hidden widths must be >= 1, blocks and query_chunk >= 0")
    return FeINFN(
        **sizes,
        **widths,
        blocks=int(get("blocks", 4)),
        omega0=float(get("omega0", 30.0)),
        s0=float(get("s0", 10.0)),
        highpass=choice("feinfn", "highpass", get("highpass", "efficient_mif"), tuple(HIGHPASS_KERNELS)),
        fft_norm=choice("feinfn", "fft_norm", get("fft_norm", "backward"), FFT_NORMS),
        q_init=choice("feinfn", "q_init", get("q_init", "siren"), ("siren", "lecun")),
        zero_out=bool(get("zero_out", True)),
        cell_decode=bool(get("cell_decode", False)),
        query_chunk=int(get("query_chunk", 65536)),
    )


FEINFN_ENTRY = ModelEntry(
    "feinfn",
    build_feinfn,
    feinfn_config,
    "FeINFN (Liang et al. 2024): spatial + Fourier implicit fusion with a complex-Gabor SFID decoder (MHIF)",
)

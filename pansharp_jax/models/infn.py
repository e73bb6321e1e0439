"""INFN (INF^3): implicit neural feature fusion for MHIF, with DHFF and INR-CS.

Paper: S. Deng et al., "INF^3: Implicit Neural Feature Fusion Function for Multispectral and
Hyperspectral Image Fusion", IEEE Trans. Computational Imaging 2024 (doi
10.1109/TCI.2024.3488569). No official code was found; the structure below follows the paper's
abstract and its successor FeINFN (Liang et al., NeurIPS 2024), see
``specs/methods/infn.md``.

Registry contract (MHIF): ``module.apply({'params': p}, lrms, pan, lms, train=False) -> hrms``
with lrms (N, h, w, B) the LR-HSI, pan (N, H, W, K) the HR-MSI guide (``guide_bands`` = K,
e.g. RGB), lms (N, H, W, B) the upsampled LR-HSI (MATLAB bicubic, the field's ``HSI_up``), all
float32 on [0, 1]; output (N, H, W, B) on the same scale, not clipped. ``scale=s`` (a number or
(sy, sx), relative to the LR-HSI) decodes the same parameters on another grid:
:func:`~pansharp_jax.nn.inr.output_size` gives its size, and the residual base is then the
MATLAB-bicubic resize of ``lrms`` to that size (``lms`` is used whenever the grid is the
guide's own).

Structure (F = ``feats``)::

    hr = EDSR(concat[pan, lms]) -> (N, H, W, F)      spatial encoder (EDSR baseline, no upsampler)
    z  = EDSR(lrms)              -> (N, h, w, F)      spectral encoder
    hp = depthwise3x3(z, high-pass kernel)            DHFF: the LR high frequencies
    for every output pixel q and each of its 4 LR neighbour cells j (LIIF local ensemble):
        g_q = hr at q (nearest; exact on the guide's grid)   DHFF: the HR high frequencies
        o_j = MLP([z_j, g_q, hp_j, rel_j (, cell)])         -> B bands
    out_q = sum_j w_j o_j,  w = softmax_j(cos(z_j, g_q) / T)   INR-CS (parameter-free)
    hrms = base + out

Choices the paper leaves open (each a config field, default first):

* ``cs_pair``: which vectors INR-CS compares: ``"latent"`` (LR latent z_j vs the HR guide
  feature g_q) or ``"highpass"`` (hp_j vs g_q). ``temperature`` T = 1 (cosines in [-1, 1]).
  The normalisation (softmax) is our choice; ``weighting`` can also be ``"area"`` (LIIF's
  bilinear areas) or ``"logit"`` (FeINFN's learned softmax) for ablations.
* ``highpass``: ``"efficient_mif"`` = [[0,-1,0],[-1,1,-1],[0,-1,0]] (the successor code's
  fixed kernel; it does not sum to zero) or ``"laplacian"`` = [[0,-1,0],[-1,4,-1],[0,-1,0]];
  zero padding, per channel.
* ``hidden``: MLP widths (256, 128) as FeINFN's spatial MLP; ``feats`` 128 and ``blocks`` 4
  as FeINFN's encoders (EDSR baseline: conv3x3 head, ``blocks`` x [conv3x3-ReLU-conv3x3 +
  skip], conv3x3, + head).
* ``cell_decode``: LIIF's cell size input, off (the paper's MLP input has none).
* Initialisation: Flax defaults (LeCun normal kernels, zero biases), except the MLP's output
  layer, zero-initialised (``zero_out``) so that the network starts as the bicubic base.

``query_chunk`` > 0 decodes the output pixels in chunks of that many queries (``nn.scan``
with shared parameters) to bound memory on whole scenes; the result and the parameter tree
are the same as unchunked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn import inr

HIGHPASS_KERNELS: dict[str, tuple[tuple[float, ...], ...]] = {
    "efficient_mif": ((0.0, -1.0, 0.0), (-1.0, 1.0, -1.0), (0.0, -1.0, 0.0)),
    "laplacian": ((0.0, -1.0, 0.0), (-1.0, 4.0, -1.0), (0.0, -1.0, 0.0)),
}
WEIGHTINGS = ("cosine", "area", "logit")
CS_PAIRS = ("latent", "highpass")


# ----------------------------------------------------------------------------- shared pieces


class EDSRBaseline(nn.Module):
    """EDSR-baseline feature extractor without upsampler: (N, H, W, Cin) -> (N, H, W, feats).

    conv3x3 head; ``blocks`` residual blocks (conv3x3 - ReLU - conv3x3, identity skip); conv3x3;
    plus the head (global skip). 'SAME' zero padding, so any H x W.
    """

    feats: int = 128
    blocks: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda name: nn.Conv(self.feats, (3, 3), padding="SAME", name=name)  # noqa: E731
        head = conv("head")(x)
        y = head
        for i in range(self.blocks):
            r = conv(f"block{i}_conv0")(y)
            y = y + conv(f"block{i}_conv1")(nn.relu(r))
        return conv("body")(y) + head


def highpass(x: jax.Array, kernel: str = "efficient_mif") -> jax.Array:
    """Fixed 3 x 3 high-pass of every channel of (N, h, w, C) (cross-correlation, zero padding)."""
    if kernel not in HIGHPASS_KERNELS:
        raise InputError(f"unknown high-pass kernel {kernel!r}: use {', '.join(HIGHPASS_KERNELS)}")
    c = x.shape[-1]
    k = jnp.asarray(HIGHPASS_KERNELS[kernel], x.dtype)
    k = jnp.tile(k[:, :, None, None], (1, 1, 1, c))  # HWIO, depthwise
    return jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
        precision=jax.lax.Precision.HIGHEST,
    )  # fmt: skip


def query_grid(lrms_shape: Sequence[int], pan_shape: Sequence[int], scale: Any) -> tuple[jax.Array, jax.Array, tuple[int, int]]:
    """(coords (Q, 2), cell (2,), (Ho, Wo)) of the output grid: the guide's (``scale=None``) or
    ``output_size(h, w, scale)`` (:func:`pansharp_jax.nn.inr.grid_query`)."""
    h, w = int(lrms_shape[1]), int(lrms_shape[2])
    if scale is None:
        hh, ww = int(pan_shape[1]), int(pan_shape[2])
        return inr.grid_query(h, w, (hh / h, ww / w))
    return inr.grid_query(h, w, scale)


def base_image(lrms: jax.Array, lms: jax.Array, size: tuple[int, int]) -> jax.Array:
    """The residual base on an (Ho, Wo) grid: ``lms`` on its own grid, else MATLAB-bicubic ``lrms``."""
    from pansharp_jax.data.resize import imresize_bicubic

    if tuple(lms.shape[1:3]) == tuple(size):
        return lms
    h, w = lrms.shape[1:3]
    up = imresize_bicubic(lrms, (size[0] / h, size[1] / w))
    if up.shape[1] < size[0] or up.shape[2] < size[1]:
        raise InputError(f"bicubic resize gave {up.shape[1:3]}, expected {size}")
    return up[:, : size[0], : size[1]].astype(lms.dtype)


def run_queries(cls: Any, name: str, chunk: int, coords: jax.Array, *shared: Any, **fields: Any) -> jax.Array:
    """Apply a query module ``cls(**fields)(carry, coords (N, q, 2), *shared) -> (carry, (N, q, O))``.

    With ``chunk`` > 0 and more than ``chunk`` queries, the queries go through ``nn.scan`` in
    chunks (parameters broadcast, so the tree and the values equal the unchunked call). Must be
    called inside a compact module. Returns (N, Q, O).
    """
    n, q = coords.shape[:2]
    if chunk <= 0 or q <= chunk:
        return cls(**fields, name=name)(None, coords, *shared)[1]
    pad = (-q) % chunk
    cp = jnp.pad(coords, ((0, 0), (0, pad), (0, 0)), mode="edge")
    cp = cp.reshape(n, -1, chunk, 2).transpose(1, 0, 2, 3)  # (chunks, N, chunk, 2)
    scan = nn.scan(
        cls, variable_broadcast="params", split_rngs={"params": False}, in_axes=(0,) + (nn.broadcast,) * len(shared),
        out_axes=0,
    )  # fmt: skip
    out = scan(**fields, name=name)(None, cp, *shared)[1]  # (chunks, N, chunk, O)
    out = out.transpose(1, 0, 2, 3).reshape(n, -1, out.shape[-1])
    return out[:, :q]


def check_mhif_inputs(name: str, bands: int, guide_bands: int, lrms: jax.Array, pan: jax.Array, lms: jax.Array) -> None:
    """InputError unless lrms (N, h, w, B), pan (N, H, W, K), lms (N, H, W, B), B = bands, K = guide_bands."""
    for key, a in (("lrms", lrms), ("pan", pan), ("lms", lms)):
        if a.ndim != 4:
            raise InputError(f"{name}: {key} must be NHWC (4-D), got shape {tuple(a.shape)}")
    if lrms.shape[-1] != bands or lms.shape[-1] != bands:
        raise InputError(f"{name}: model has {bands} bands but lrms has {lrms.shape[-1]} and lms {lms.shape[-1]}")
    if pan.shape[-1] != guide_bands:
        raise InputError(f"{name}: model takes a {guide_bands}-band guide, got pan with {pan.shape[-1]} bands")
    if lms.shape[:3] != pan.shape[:3] or lrms.shape[0] != pan.shape[0]:
        raise InputError(f"{name}: lms {tuple(lms.shape)}, pan {tuple(pan.shape)} and lrms {tuple(lrms.shape)} do not fit")


class MLP(nn.Module):
    """:class:`pansharp_jax.nn.inr.MLP` (same parameter names) with zero-initialised output
    weights when ``zero_out``: (..., D) -> (..., out_dim)."""

    hidden: Sequence[int]
    out_dim: int
    zero_out: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(int(width), name=f"dense_{i}")(x))
        init = nn.initializers.zeros if self.zero_out else nn.initializers.lecun_normal()
        return nn.Dense(self.out_dim, kernel_init=init, name="out")(x)


def _cell_input(cell: jax.Array, h: int, w: int, like: jax.Array) -> jax.Array:
    c = jnp.asarray(cell, like.dtype) * jnp.asarray([h, w], like.dtype)
    return jnp.broadcast_to(c, like.shape)


# ----------------------------------------------------------------------------- INFN


class INFNQuery(nn.Module):
    """One chunk of INFN queries: ``(carry, coords (N, q, 2), cell (2,), lr_cat (N, h, w, 2F),
    hr (N, H, W, F)) -> (carry, (N, q, out_dim))`` with lr_cat = [z, hp] (module docstring)."""

    out_dim: int
    hidden: tuple[int, ...] = (256, 128)
    weighting: str = "cosine"
    temperature: float = 1.0
    cs_pair: str = "latent"
    cell_decode: bool = False
    zero_out: bool = False

    @nn.compact
    def __call__(self, carry: Any, coords: jax.Array, cell: jax.Array, lr_cat: jax.Array, hr: jax.Array) -> tuple[Any, jax.Array]:
        _, h, w, c2 = lr_cat.shape
        f = c2 // 2
        nb = inr.local_neighbours(lr_cat, coords)
        z, hp = nb.feats[..., :f], nb.feats[..., f:]
        g = inr.sample_nearest(hr, coords)  # (N, q, F)
        parts = [z, jnp.broadcast_to(g[None], z.shape), hp, nb.rel]
        if self.cell_decode:
            parts.append(_cell_input(cell, h, w, nb.rel))
        extra = 1 if self.weighting == "logit" else 0
        preds = MLP(tuple(self.hidden), self.out_dim + extra, self.zero_out, name="mlp")(jnp.concatenate(parts, axis=-1))
        if self.weighting == "cosine":
            weights = inr.cosine_weights(z if self.cs_pair == "latent" else hp, g, self.temperature)
        elif self.weighting == "area":
            weights = inr.area_weights(nb.rel)
        else:
            weights = jax.nn.softmax(preds[..., -1], axis=0)
        return carry, inr.ensemble(preds[..., : self.out_dim], weights)


class INFN(nn.Module):
    """INFN for MHIF (module docstring): ``(lrms, pan, lms, train=False, scale=None) -> hrms``."""

    bands: int = 31
    guide_bands: int = 3
    feats: int = 128
    blocks: int = 4
    hidden: tuple[int, ...] = (256, 128)
    weighting: str = "cosine"
    temperature: float = 1.0
    cs_pair: str = "latent"
    highpass: str = "efficient_mif"
    cell_decode: bool = False
    zero_out: bool = True
    query_chunk: int = 65536

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False, scale: Any = None) -> jax.Array:
        """lrms (N, h, w, B), pan (N, H, W, K), lms (N, H, W, B) -> (N, Ho, Wo, B), (Ho, Wo) = (H, W)
        or ``output_size(h, w, scale)``; float32 on [0, 1], not clipped. ``train`` is unused."""
        del train
        check_mhif_inputs("infn", self.bands, self.guide_bands, lrms, pan, lms)
        hr = EDSRBaseline(self.feats, self.blocks, name="spatial_encoder")(jnp.concatenate([pan, lms], axis=-1))
        z = EDSRBaseline(self.feats, self.blocks, name="spectral_encoder")(lrms)
        lr_cat = jnp.concatenate([z, highpass(z, self.highpass)], axis=-1)
        coords, cell, size = query_grid(lrms.shape, pan.shape, scale)
        coords = jnp.broadcast_to(coords, (lrms.shape[0], *coords.shape))
        fields = dict(
            out_dim=self.bands, hidden=tuple(self.hidden), weighting=self.weighting, temperature=self.temperature,
            cs_pair=self.cs_pair, cell_decode=self.cell_decode, zero_out=self.zero_out,
        )  # fmt: skip
        out = run_queries(INFNQuery, "query", self.query_chunk, coords, cell, lr_cat, hr, **fields)
        return base_image(lrms, lms, size) + out.reshape(lrms.shape[0], *size, self.bands)


# ----------------------------------------------------------------------------- config / registry


def infn_config() -> ml_collections.ConfigDict:
    """Model config of INFN (FeINFN's encoder and MLP sizes; see the module docstring)."""
    return ml_collections.ConfigDict(
        {
            "name": "infn",
            "bands": 31,
            "guide_bands": 3,  # HR-MSI bands (RGB)
            "feats": 128,
            "blocks": 4,
            "hidden": (256, 128),
            "weighting": "cosine",  # 'cosine' (INR-CS) | 'area' | 'logit'
            "temperature": 1.0,
            "cs_pair": "latent",  # 'latent' (z_j vs g_q) | 'highpass' (hp_j vs g_q)
            "highpass": "efficient_mif",  # 'efficient_mif' | 'laplacian'
            "cell_decode": False,
            "zero_out": True,  # zero-initialised MLP output: the network starts as the bicubic base
            "query_chunk": 65536,  # queries per decoding chunk (0 = all at once)
        }
    )


def choice(model: str, key: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` as str if in ``choices``, else InputError naming the config field."""
    value = str(value)
    if value not in choices:
        raise InputError(f"model config '{model}': {key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def positive_ints(model: str, **values: Any) -> dict[str, int]:
    """The given config values as ints, InputError unless each is >= 1."""
    out = {k: int(v) for k, v in values.items()}
    bad = {k: v for k, v in out.items() if v < 1}
    if bad:
        raise InputError(f"model config '{model}': {', '.join(bad)} must be >= 1, got {bad}")
    return out


def build_infn(cfg: ml_collections.ConfigDict | dict[str, Any]) -> INFN:
    """The :class:`INFN` module of a model config (:func:`infn_config`)."""
    get = cfg.get
    sizes = positive_ints("infn", bands=get("bands", 31), guide_bands=get("guide_bands", 3), feats=get("feats", 128))
    hidden = tuple(int(v) for v in get("hidden", (256, 128)))
    if any(v < 1 for v in hidden) or int(get("blocks", 4)) < 0 or int(get("query_chunk", 0)) < 0:
        raise InputError("model config 'infn': hidden widths must be >= 1, blocks and query_chunk >= 0")
    if not float(get("temperature", 1.0)) > 0:
        raise InputError(f"model config 'infn': temperature must be > 0, got {get('temperature')}")
    return INFN(
        **sizes,
        blocks=int(get("blocks", 4)),
        hidden=hidden,
        weighting=choice("infn", "weighting", get("weighting", "cosine"), WEIGHTINGS),
        temperature=float(get("temperature", 1.0)),
        cs_pair=choice("infn", "cs_pair", get("cs_pair", "latent"), CS_PAIRS),
        highpass=choice("infn", "highpass", get("highpass", "efficient_mif"), tuple(HIGHPASS_KERNELS)),
        cell_decode=bool(get("cell_decode", False)),
        zero_out=bool(get("zero_out", True)),
        query_chunk=int(get("query_chunk", 65536)),
    )


def count_params(params: Any) -> int:
    """Total number of parameter elements."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


INFN_ENTRY = ModelEntry(
    "infn",
    build_infn,
    infn_config,
    "INFN (Deng et al. 2024): implicit neural feature fusion for MHIF, DHFF + cosine-similarity local ensemble",
)

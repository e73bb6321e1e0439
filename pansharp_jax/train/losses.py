"""Pixel, Fourier and wavelet losses on the [0, 1] scale, averaged over every sample.

Every loss takes ``(pred, target)`` of the same shape ``(..., H, W, C)`` (channels last; a
batch dimension is optional, so the losses also work under ``jax.vmap`` per sample) and
returns a float32 scalar.

* ``l1`` / ``l2``: mean absolute / squared error over every pixel, band and sample.
* ``fft``: :func:`fft_l1`, the L1 distance of the 2D Fourier spectra (real and imaginary
  parts), ``norm='ortho'`` so that its scale does not depend on the image size.
* ``dwt``: :func:`wavelet_l1`, the L1 distance of the multi-level 2D DWT sub-bands
  (:mod:`pansharp_jax.nn.dwt`, periodized orthogonal wavelets).
* ``hybrid``: :func:`hybrid_loss`, ``w_l1 * l1 + w_l2 * l2 + w_fft * fft + w_dwt * dwt``
  (the CMT-style spatial + Fourier + wavelet loss); any method can use it from its config:

      c.loss = "hybrid"
      c.loss_weights = ml_collections.ConfigDict(
          {"l1": 1.0, "l2": 0.0, "fft": 0.1, "dwt": 0.1, "wavelet": "haar", "levels": 2, "fft_norm": "ortho"})

The CMT paper (Shu et al. 2024) names the three domains but its exact terms and weights
could not be read; :data:`HYBRID_DEFAULTS` (L1 + 0.1 Fourier + 0.1 Haar 2-level wavelet)
is a guess, every part of it configurable.

:func:`get_loss` keeps the plain string form (``get_loss("l1")``); :func:`loss_from_config`
reads ``config.loss`` and, for ``hybrid``, ``config.loss_weights`` (missing keys take
:data:`HYBRID_DEFAULTS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from pansharp_jax.errors import InputError
from pansharp_jax.nn import dwt as dwt_lib

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error."""
    return jnp.mean(jnp.abs(pred - target))


def l2(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error (PyTorch ``MSELoss``)."""
    return jnp.mean(jnp.square(pred - target))


def fft_l1(pred: jax.Array, target: jax.Array, *, norm: str = "ortho") -> jax.Array:
    """Fourier-domain L1 loss of ``pred``, ``target`` (..., H, W, C) on the [0, 1] scale.

    ``F = rfft2`` over (H, W) per band with ``norm`` (``'ortho'``: unitary, size-independent
    scale; ``'backward'``: numpy's default, unscaled); the loss is
    ``mean(|Re F(pred) - Re F(target)|) + mean(|Im F(pred) - Im F(target)|)`` over the
    ``H x (W // 2 + 1)`` half spectrum of every band and sample. Float32 scalar.
    """
    axes = (pred.ndim - 3, pred.ndim - 2)
    diff = jnp.fft.rfft2((pred - target).astype(jnp.float32), axes=axes, norm=norm)  # linear: F(p) - F(t)
    return jnp.mean(jnp.abs(jnp.real(diff))) + jnp.mean(jnp.abs(jnp.imag(diff)))


def wavelet_l1(pred: jax.Array, target: jax.Array, *, wavelet: str = "haar", levels: int = 2) -> jax.Array:
    """Wavelet-domain L1 loss of ``pred``, ``target`` (..., H, W, C) on the [0, 1] scale.

    Both images go through the ``levels``-level periodized 2D DWT (:func:`~pansharp_jax.nn.dwt.wavedec2`);
    the loss is the mean over the ``3 * levels + 1`` sub-bands (every detail band LH, HL, HH of
    each level and the final LL) of each band's mean absolute difference, so every scale and
    orientation counts equally. Float32 scalar.
    """
    ll, details = dwt_lib.wavedec2((pred - target).astype(jnp.float32), wavelet, int(levels))  # linear
    terms = [jnp.mean(jnp.abs(ll))] + [jnp.mean(jnp.abs(b)) for bands in details for b in bands]
    return sum(terms[1:], terms[0]) / len(terms)


HYBRID_DEFAULTS: dict[str, Any] = {
    "l1": 1.0,
    "l2": 0.0,
    "fft": 0.1,
    "dwt": 0.1,
    "wavelet": "haar",
    "levels": 2,
    "fft_norm": "ortho",
}


def hybrid_loss(
    pred: jax.Array,
    target: jax.Array,
    *,
    l1_weight: float = 1.0,
    l2_weight: float = 0.0,
    fft_weight: float = 0.1,
    dwt_weight: float = 0.1,
    wavelet: str = "haar",
    levels: int = 2,
    fft_norm: str = "ortho",
) -> jax.Array:
    """Spatial + Fourier + wavelet loss: ``l1_w*l1 + l2_w*l2 + fft_w*fft_l1 + dwt_w*wavelet_l1``.

    Inputs (..., H, W, C) on the [0, 1] scale; terms with weight 0 are not computed.
    """
    total = jnp.zeros((), jnp.float32)
    if l1_weight:
        total = total + l1_weight * l1(pred, target)
    if l2_weight:
        total = total + l2_weight * l2(pred, target)
    if fft_weight:
        total = total + fft_weight * fft_l1(pred, target, norm=fft_norm)
    if dwt_weight:
        total = total + dwt_weight * wavelet_l1(pred, target, wavelet=wavelet, levels=levels)
    return total


def make_hybrid(weights: Mapping[str, Any] | None = None) -> LossFn:
    """The hybrid loss with ``weights`` (keys of :data:`HYBRID_DEFAULTS`; missing ones take defaults)."""
    w = dict(HYBRID_DEFAULTS)
    if weights is not None:
        given = dict(weights)
        unknown = set(given) - set(HYBRID_DEFAULTS)
        if unknown:
            raise InputError(f"unknown loss_weights keys {sorted(unknown)}; known: {sorted(HYBRID_DEFAULTS)}")
        w.update(given)
    dwt_lib.wavelet_filters(str(w["wavelet"]))  # fail early on a bad name
    if int(w["levels"]) < 1:
        raise InputError(f"loss_weights.levels must be >= 1, got {w['levels']}")

    def fn(pred: jax.Array, target: jax.Array) -> jax.Array:
        return hybrid_loss(
            pred,
            target,
            l1_weight=float(w["l1"]),
            l2_weight=float(w["l2"]),
            fft_weight=float(w["fft"]),
            dwt_weight=float(w["dwt"]),
            wavelet=str(w["wavelet"]),
            levels=int(w["levels"]),
            fft_norm=str(w["fft_norm"]),
        )

    return fn


LOSSES: dict[str, LossFn] = {
    "l1": l1,
    "l2": l2,
    "mse": l2,
    "mae": l1,
    "fft": fft_l1,
    "dwt": wavelet_l1,
    "wavelet": wavelet_l1,
    "hybrid": make_hybrid(),
}


def get_loss(name: str, weights: Mapping[str, Any] | None = None) -> LossFn:
    """The loss called ``name`` (l1, l2, fft, dwt, hybrid; aliases mae, mse, wavelet).

    ``weights`` (only for ``hybrid``): its weights and options, see :data:`HYBRID_DEFAULTS`.
    """
    key = str(name).lower()
    if key not in LOSSES:
        raise InputError(f"unknown loss {name!r}: use one of {', '.join(sorted(LOSSES))}")
    if key == "hybrid":
        return make_hybrid(weights)
    return LOSSES[key]


def loss_from_config(config: Any) -> LossFn:
    """The loss a training config asks for: ``config.loss`` plus, for hybrid, ``config.loss_weights``."""
    name = str(config.loss)
    weights = config.get("loss_weights", None) if hasattr(config, "get") else None
    if weights is not None and hasattr(weights, "to_dict"):
        weights = weights.to_dict()
    return get_loss(name, weights if str(name).lower() == "hybrid" else None)

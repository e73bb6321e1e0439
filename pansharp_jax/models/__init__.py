"""Floor 2: learned fusion networks, their registry and the import of released weights.

* :mod:`~pansharp_jax.models.registry`: method name -> Flax module builder and config.
* :mod:`~pansharp_jax.models.cnn_baselines`: PNN, PanNet, DiCNN, MSDCNN, DRPNN,
  FusionNet, LAGNet.
* :mod:`~pansharp_jax.models.convert`: released PyTorch checkpoints -> Flax params
  (read without PyTorch by :mod:`~pansharp_jax.models.torch_reader`).
* :func:`fuse`: the design contract ``fuse(params, lrms, pan, *, rng=None)`` for any
  registered model.

Example (released WV3 weights of FusionNet on a [0, 1] scene)::

    from pansharp_jax.models import fuse
    from pansharp_jax.models.convert import import_weights
    params, cfg = import_weights("fusionnet", "weights/fusionnet/WV3/fusionnet.pth")
    hrms = fuse(params, lrms, pan, model_config=cfg)        # (H, W, 8) on [0, 1]
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from pansharp_jax.errors import InputError
from pansharp_jax.models import registry

__all__ = ["fuse", "registry"]


@functools.partial(jax.jit, static_argnames=("module", "ratio", "clip"))
def _fuse_batch(module: Any, params: Any, lrms: jax.Array, pan: jax.Array, ratio: int, clip: bool, lms: Any = None) -> jax.Array:
    from pansharp_jax.classical import upsample_ms

    if lms is None:
        lms = upsample_ms(lrms, ratio)
    out = module.apply({"params": params}, lrms, pan, lms, train=False)
    return jnp.clip(out, 0.0, 1.0) if clip else out


def fuse(
    params: Any,
    lrms: Any,
    pan: Any,
    *,
    model_config: ml_collections.ConfigDict | dict[str, Any],
    rng: Any = None,
    clip: bool = False,
    lms: Any = None,
) -> jax.Array:
    """Fuse with a registered learned model: make ``lms`` and apply the network.

    Args:
      params: the model's Flax params (the dict under ``'params'``; a full
        ``{'params': ...}`` variables dict is accepted too).
      lrms: (N, h, w, C) or (h, w, C) low-resolution MS on the [0, 1] scale.
      pan: (N, H, W, 1), (N, H, W), (H, W, 1) or (H, W) PAN on the [0, 1] scale, with
        H = ratio * h, W = ratio * w for an integer ratio.
      model_config: the model config (``name``, ``bands``, sizes), as
        ``registry.default_config`` or ``convert.import_weights`` give it.
      rng: unused (the networks are deterministic at inference); accepted for the contract.
      clip: clip the output to [0, 1], as the DLPan-Toolbox does before saving its results.
      lms: optional (N, H, W, C) / (H, W, C) upsampled MS to use instead of computing it
        (a window of a larger scene takes its ``lms`` from the scene's circular upsampling).

    Returns:
      (N, H, W, C) or (H, W, C) fused image on the [0, 1] scale (float32 for float32
      inputs). ``lms`` is the toolbox's ``interp23tap`` for power-of-two ratios
      (``interp_general`` otherwise). Pure and jittable (close over ``model_config``,
      e.g. ``jax.jit(functools.partial(fuse, model_config=cfg))``).
    """
    del rng
    module = registry.build_model(model_config)
    if isinstance(params, dict) and set(params) == {"params"}:
        params = params["params"]
    lrms, pan = jnp.asarray(lrms), jnp.asarray(pan)
    if not jnp.issubdtype(lrms.dtype, jnp.floating):
        lrms = lrms.astype(jnp.float32)
    pan = pan.astype(lrms.dtype)
    if lrms.ndim not in (3, 4):
        raise InputError(f"lrms must be (h, w, C) or (N, h, w, C), got shape {tuple(lrms.shape)}")
    if pan.ndim == lrms.ndim - 1:
        pan = pan[..., None]
    if pan.ndim != lrms.ndim or pan.shape[-1] != 1:
        raise InputError(f"pan must be (..., H, W) or (..., H, W, 1) like lrms {tuple(lrms.shape)}, got {tuple(pan.shape)}")
    single = lrms.ndim == 3
    if single:
        lrms, pan = lrms[None], pan[None]
    if lrms.shape[0] != pan.shape[0]:
        raise InputError(f"batch sizes differ: lrms {lrms.shape[0]} vs pan {pan.shape[0]}")
    (h, w), (hh, ww) = lrms.shape[1:3], pan.shape[1:3]
    ratio = hh // h if h else 0
    if ratio < 1 or (hh, ww) != (ratio * h, ratio * w):
        raise InputError(f"pan {hh}x{ww} is not an integer multiple of lrms {h}x{w} (same ratio on both axes)")
    if lms is not None:
        lms = jnp.asarray(lms, lrms.dtype)
        lms = lms[None] if single and lms.ndim == 3 else lms
        if lms.shape != (*pan.shape[:3], lrms.shape[-1]):
            raise InputError(f"lms must be {(*pan.shape[:3], lrms.shape[-1])}, got {tuple(lms.shape)}")
    out = _fuse_batch(module, params, lrms, pan, ratio, bool(clip), lms)
    return out[0] if single else out

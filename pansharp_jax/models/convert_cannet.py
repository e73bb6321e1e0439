"""Import the authors' released CANNet weights (``cannet_wv3.pth``, ``cannet_gf2.pth``,
``cannet_qb.pth``; flat PyTorch state dicts) into Flax params of
:class:`pansharp_jax.models.canconv.CANNet`.

``import_cannet(path)`` (also reached as ``convert.import_weights('cannet', path)``) returns
``(params, model_config)``; bands and channels are read from ``tail_conv.weight`` (C, channels,
3, 3); the file is read without PyTorch (:func:`pansharp_jax.models.torch_reader.load_torch_state_dict`).

Name mapping (PyTorch -> Flax path): dots become path separators and a numeric index joins its
parent (``rb1.conv1.kernel_head.0.weight`` -> ``rb1/conv1/kernel_head_0/kernel``,
``down1.conv.3.weight`` -> ``down1/conv_3/kernel``, ``up1.conv2.0.weight`` ->
``up1/conv2_0/kernel``); ``weight`` -> ``kernel``; CANConv ``kernels`` (Cin, 9, Cout) are kept
as they are. Layouts: Conv2d (out, in/g, kh, kw) -> (kh, kw, in/g, out); the up-blocks'
ConvTranspose2d ``upN.conv1`` (in, out, kh, kw) -> (kh, kw, in, out); Linear (out, in) ->
(in, out). A ``module.`` prefix (DataParallel) is dropped. Every tensor is checked against the
module's parameter shapes: missing, unexpected or mis-shaped ones raise InputError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.errors import InputError

__all__ = ["convert_cannet", "import_cannet", "infer_cannet_config"]


def _strip(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {(k[len("module.") :] if k.startswith("module.") else k): np.asarray(v) for k, v in state_dict.items()}


def infer_cannet_config(state_dict: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """The model config (``name``, ``bands``, ``channels``, defaults otherwise) a state dict implies."""
    from pansharp_jax.models.canconv import cannet_config

    sd = _strip(state_dict)
    if "tail_conv.weight" not in sd or "head_conv.weight" not in sd:
        raise InputError(f"not a CANNet state dict: no head_conv/tail_conv weight (have {', '.join(list(sd)[:4])}, ...)")
    bands, channels = sd["tail_conv.weight"].shape[:2]
    if sd["head_conv.weight"].shape[1] != bands + 1:
        raise InputError(f"CANNet: head_conv takes {sd['head_conv.weight'].shape[1]} bands, expected {bands} + 1")
    cfg = cannet_config()
    cfg.bands, cfg.channels = int(bands), int(channels)
    return cfg


def _flax_path(name: str) -> tuple[str, ...]:
    parts: list[str] = []
    for part in name.split("."):
        if part.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{part}"
        else:
            parts.append(part)
    if parts[-1] == "weight":
        parts[-1] = "kernel"
    return tuple(parts)


def _layout(name: str, value: np.ndarray) -> np.ndarray:
    if name.endswith(".kernels") or value.ndim == 1:
        return value
    if value.ndim == 2:  # Linear (out, in)
        return value.T
    if value.ndim == 4:
        if re.fullmatch(r"up\d+\.conv1\.weight", name):  # ConvTranspose2d (in, out, kh, kw)
            return value.transpose(2, 3, 0, 1)
        return value.transpose(2, 3, 1, 0)  # Conv2d (out, in/g, kh, kw)
    raise InputError(f"CANNet: unexpected rank-{value.ndim} tensor '{name}'")


def convert_cannet(state_dict: Mapping[str, Any], bands: int | None = None) -> dict[str, Any]:
    """PyTorch CANNet state dict -> Flax params (float32 ``jnp`` arrays), shape-checked.

    Args:
      state_dict: name -> array (NumPy or torch tensors converted by ``np.asarray``).
      bands: expected band count (None -> from the tensors).
    """
    from pansharp_jax.models.canconv import _build

    sd = _strip(state_dict)
    cfg = infer_cannet_config(sd)
    if bands is not None and int(bands) != cfg.bands:
        raise InputError(f"CANNet state dict is for {cfg.bands} bands, not {bands}")
    module = _build(cfg)
    c = cfg.bands
    from pansharp_jax.models.convert import assemble_params, param_shapes

    want = param_shapes(
        module,
        jax.ShapeDtypeStruct((1, 4, 4, c), jnp.float32),
        jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32),
        jax.ShapeDtypeStruct((1, 16, 16, c), jnp.float32),
    )
    tensors = ((name, _flax_path(name), lambda name=name, value=value: _layout(name, value)) for name, value in sd.items())
    return assemble_params("CANNet", tensors, want)


def import_cannet(path: str | os.PathLike[str]) -> tuple[dict[str, Any], ml_collections.ConfigDict]:
    """Read a released CANNet ``.pth`` -> ``(params, model_config)`` (no PyTorch needed)."""
    from pansharp_jax.models.torch_reader import load_torch_state_dict

    sd = load_torch_state_dict(path)
    cfg = infer_cannet_config(sd)
    return convert_cannet(sd, cfg.bands), cfg

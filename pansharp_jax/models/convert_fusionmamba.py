"""Import the authors' released FusionMamba weights (PyTorch state dicts) into Flax params.

``import_fusionmamba('fusionmamba/420.pth')`` (also reached as
``convert.import_weights('fusionmamba', path)``) returns ``(params, model_config)`` for
:class:`pansharp_jax.models.fusion_mamba.FusionMamba`; the band count, guide bands, ratio,
width, depth, Mamba sizes and the variant are read from the tensors:

* ``variant``: '420' when the spectral gate (``spe_attn.*``) is present, else '400';
* bands, width: ``to_hrms.2.weight`` (C, dim, 3, 3); guide bands: ``raise_pan_dim.0.weight``;
  ratio: ``upsample.upsamle.0.weight`` (ratio^2 C, C, 3, 3); ``d_state`` / ``expand`` /
  ``d_conv`` from the stage-0 Mamba's ``A_log`` and ``conv1d``; depth: the number of
  ``spa_mamba_layers`` entries.

Name mapping (PyTorch -> Flax path): dots become path separators and a numeric index joins
its parent (``to_hrms.2.weight`` -> ``to_hrms_2/kernel``, ``stage0.fm.spa_mamba_layers.0.norm``
-> ``stage0/fm/spa_mamba_layers_0/norm``); ``upsample.upsamle.0`` (sic) -> ``upsample``; a
``module.`` prefix (DataParallel) is dropped. Layouts by tensor rank: Conv2d (out, in/g, kh, kw)
-> (kh, kw, in/g, out); ConvTranspose2d ``sample.up.0`` (in, out, kh, kw) -> (kh, kw, in, out);
depthwise causal Conv1d (d, 1, k) -> (k, d); Linear (out, in) -> (in, out); a 1-D ``weight`` is
a LayerNorm scale; ``A*_log``, ``D*`` and biases are kept. PyTorch is not needed (files are
read by :func:`pansharp_jax.models.convert.load_torch_state_dict`). Every tensor is checked
against the module's parameter shapes: missing, unexpected or mis-shaped ones raise InputError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.errors import InputError

__all__ = ["convert_fusionmamba", "import_fusionmamba", "infer_fusionmamba_config"]


def _strip(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {(k[len("module.") :] if k.startswith("module.") else k): np.asarray(v) for k, v in state_dict.items()}


def _shape(sd: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in sd:
        have = ", ".join(list(sd)[:4])
        raise InputError(f"not a FusionMamba state dict: tensor '{key}' is missing (have {have}, ...)")
    return tuple(np.shape(sd[key]))


def infer_fusionmamba_config(state_dict: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """The model config (``name``, ``bands``, sizes, ``variant``) that a state dict's shapes imply."""
    from pansharp_jax.models.fusion_mamba import fusionmamba_config

    sd = _strip(state_dict)
    cfg = fusionmamba_config()
    bands, dim = _shape(sd, "to_hrms.2.weight")[:2]
    guide = _shape(sd, "raise_pan_dim.0.weight")[1]
    up = _shape(sd, "upsample.upsamle.0.weight")[0]
    ratio = int(round((up / bands) ** 0.5))
    if ratio * ratio * bands != up:
        raise InputError(f"FusionMamba: upsample has {up} output channels, not ratio^2 x {bands} bands")
    d_inner, d_state = _shape(sd, "stage0.fm.spa_mamba_layers.0.block.A_log")
    d_conv = _shape(sd, "stage0.fm.spa_mamba_layers.0.block.conv1d.weight")[-1]
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"stage0\.fm\.spa_mamba_layers\.(\d+)\.", k))})
    cfg.bands, cfg.guide_bands, cfg.ratio, cfg.dim = int(bands), int(guide), ratio, int(dim)
    cfg.d_state, cfg.d_conv, cfg.expand, cfg.depth = int(d_state), int(d_conv), int(d_inner) // int(dim), depth
    cfg.variant = "420" if any(k.startswith("spe_attn.") for k in sd) else "400"
    cfg.scan_method = "auto"  # sequential on CPU (fastest, least memory there); chunked + remat elsewhere
    return cfg


def _flax_path(name: str) -> tuple[str, ...]:
    name = re.sub(r"^upsample\.upsamle\.0\.", "upsample.", name)
    parts: list[str] = []
    for part in name.split("."):
        if part.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{part}"
        else:
            parts.append(part)
    return tuple(parts)


def _to_flax(path: tuple[str, ...], a: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    a = np.asarray(a, dtype=np.float32)
    if path[-1] != "weight":
        return path, a
    if a.ndim == 4:
        if path[-2].startswith("up_"):  # ConvTranspose2d (in, out, kh, kw)
            return (*path[:-1], "kernel"), np.ascontiguousarray(a.transpose(2, 3, 0, 1))
        return (*path[:-1], "kernel"), np.ascontiguousarray(a.transpose(2, 3, 1, 0))  # Conv2d (out, in/g, kh, kw)
    if a.ndim == 3:  # depthwise Conv1d (d, 1, k)
        return (*path[:-1], "kernel"), np.ascontiguousarray(a[:, 0, :].T)
    if a.ndim == 2:  # Linear (out, in)
        return (*path[:-1], "kernel"), np.ascontiguousarray(a.T)
    return (*path[:-1], "scale"), a  # LayerNorm


def _expected_shapes(cfg: ml_collections.ConfigDict) -> dict[tuple[str, ...], tuple[int, ...]]:
    from pansharp_jax.models import registry
    from pansharp_jax.models.convert import param_shapes

    h, r = 4, int(cfg.ratio)
    lrms = jax.ShapeDtypeStruct((1, h, h, int(cfg.bands)), jnp.float32)
    pan = jax.ShapeDtypeStruct((1, r * h, r * h, int(cfg.guide_bands)), jnp.float32)
    return param_shapes(registry.build_model(cfg), lrms, pan)


def convert_fusionmamba(state_dict: Mapping[str, Any], bands: int | None = None) -> dict[str, Any]:
    """A FusionMamba PyTorch state dict -> Flax params (the dict under ``'params'``).

    ``bands``: expected band count (None accepts what the shapes say). The model config is
    :func:`infer_fusionmamba_config` of the same state dict.
    """
    sd = _strip(state_dict)
    cfg = infer_fusionmamba_config(sd)
    if bands is not None and int(bands) != cfg.bands:
        raise InputError(f"fusionmamba state dict is for {cfg.bands} bands, not {bands}")
    expected = _expected_shapes(cfg)
    from pansharp_jax.models.convert import assemble_params

    tensors = ((name, *_to_flax(_flax_path(name), value)) for name, value in sd.items())
    return assemble_params("fusionmamba", ((name, path, lambda a=arr: a) for name, path, arr in tensors), expected)


def import_fusionmamba(path: str | Path) -> tuple[dict[str, Any], ml_collections.ConfigDict]:
    """Read a released FusionMamba checkpoint (without PyTorch) -> ``(params, model_config)``."""
    from pansharp_jax.models.convert import load_torch_state_dict

    sd = _strip(load_torch_state_dict(path))
    cfg = infer_fusionmamba_config(sd)
    return convert_fusionmamba(sd, cfg.bands), cfg

"""Import the authors' released PyTorch weights of the CNN baselines into Flax params.

``import_weights('fusionnet', 'weights/fusionnet/WV3/fusionnet.pth')`` returns
``(params, model_config)``: the band count and sizes are read from the tensor shapes, and
``registry.build_model(model_config).apply({'params': params}, lrms, pan, lms)`` then
reproduces the toolbox's network output on [0, 1] inputs (see
:mod:`pansharp_jax.models.cnn_baselines` for the input conventions each network keeps).
PyTorch is not needed: files are read by :mod:`pansharp_jax.models.torch_reader`.

Name mapping (PyTorch -> Flax path): ``a.b.weight`` -> ``a/b/kernel``, ``.bias`` ->
``/bias``; a numeric index joins its parent (``backbone.3.conv2`` -> ``backbone_3/conv2``,
``attention1.0`` -> ``attention1_0``); PanNet/FusionNet's ``backbone.N.*`` (storage
aliases of ``res{N+1}.*``) map to ``res{N+1}``; LAGNet's ``head_conv.0.*`` (a Sequential
index) to ``head_conv``. Layouts: conv weights (out, in, kh, kw) -> (kh, kw, in, out);
PanNet's transposed-conv weight (in, out, kh, kw) -> (kh, kw, in, out), flipped by the layer.
Every converted tensor is checked against the module's parameter shapes; missing,
unexpected or mis-shaped tensors raise InputError.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.models import registry
from pansharp_jax.models.torch_reader import load_torch_state_dict, read_torch_checkpoint

__all__ = ["IMPORTABLE", "METHODS", "convert", "import_weights", "infer_config", "load_torch_state_dict", "read_torch_checkpoint"]

METHODS = ("pnn", "pannet", "dicnn", "msdcnn", "drpnn", "fusionnet", "lagnet")

# Networks with their own importer module: name -> "python.module:function(path) -> (params, cfg)"
_OWN_IMPORTERS: dict[str, str] = {
    "fusionmamba": "pansharp_jax.models.convert_fusionmamba:import_fusionmamba",
    "cannet": "pansharp_jax.models.convert_cannet:import_cannet",
}

IMPORTABLE = (*METHODS, *_OWN_IMPORTERS)
"""Every method whose released PyTorch weights :func:`import_weights` reads."""


def _method(method: str) -> str:
    key = str(method).strip().lower().replace("-", "_")
    if key not in METHODS:
        raise InputError(f"no weight converter for '{method}'; known: {', '.join(METHODS)}")
    return key


def _shape(sd: Mapping[str, np.ndarray], key: str, method: str) -> tuple[int, ...]:
    if key not in sd:
        raise InputError(f"not a {method} state dict: tensor '{key}' is missing (have {', '.join(list(sd)[:6])}, ...)")
    return tuple(np.shape(sd[key]))


def _count_blocks(sd: Mapping[str, np.ndarray], pattern: str) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return len(found)


def infer_config(method: str, state_dict: Mapping[str, np.ndarray]) -> ml_collections.ConfigDict:
    """The model config (``name``, ``bands`` and sizes) that a state dict's shapes imply."""
    m = _method(method)
    sd = state_dict
    cfg = registry.default_config(m)
    if m == "pnn":
        w1, w2, w3 = (_shape(sd, f"conv{i}.weight", m) for i in (1, 2, 3))
        cfg.bands, cfg.channels, cfg.kernel_sizes = w3[0], (w1[0], w2[0]), (w1[2], w2[2], w3[2])
    elif m == "pannet":
        cfg.bands = _shape(sd, "conv3.weight", m)[0]
        cfg.channels = _shape(sd, "conv1.weight", m)[0]
        cfg.num_res_blocks = max(_count_blocks(sd, r"res(\d+)\."), _count_blocks(sd, r"backbone\.(\d+)\."))
        cfg.ratio = _shape(sd, "deconv.weight", m)[2] // 2
    elif m == "dicnn":
        cfg.bands, cfg.channels = _shape(sd, "conv3.weight", m)[0], _shape(sd, "conv1.weight", m)[0]
    elif m == "msdcnn":
        cfg.bands = _shape(sd, "conv5.weight", m)[0]
        cfg.deep_channels = (_shape(sd, "conv1.weight", m)[0], _shape(sd, "conv3.weight", m)[0])
        cfg.shallow_channels = (_shape(sd, "shallow1.weight", m)[0], _shape(sd, "shallow2.weight", m)[0])
    elif m == "drpnn":
        w1 = _shape(sd, "conv1.weight", m)
        cfg.bands, cfg.channels, cfg.kernel_size = _shape(sd, "conv3.weight", m)[0], w1[0], w1[2]
        cfg.num_blocks = _count_blocks(sd, r"backbone\.(\d+)\.")
    elif m == "fusionnet":
        cfg.bands, cfg.channels = _shape(sd, "conv3.weight", m)[0], _shape(sd, "conv1.weight", m)[0]
        cfg.num_res_blocks = max(_count_blocks(sd, r"res(\d+)\."), _count_blocks(sd, r"backbone\.(\d+)\."))
    else:  # lagnet
        cfg.bands = _shape(sd, "tail_conv.weight", m)[0]
        cfg.channels = _shape(sd, "head_conv.0.weight", m)[0]
        cfg.num_res_blocks = _count_blocks(sd, r"RB(\d+)\.")
    cfg.bands = int(cfg.bands)
    return cfg


def _flax_path(method: str, name: str) -> tuple[str, ...]:
    if method in ("pannet", "fusionnet"):
        name = re.sub(r"^backbone\.(\d+)\.", lambda mm: f"res{int(mm.group(1)) + 1}.", name)
    if method == "lagnet":
        name = re.sub(r"^head_conv\.0\.", "head_conv.", name)
    parts: list[str] = []
    for part in name.split("."):
        if part.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{part}"
        else:
            parts.append(part)
    leaf = {"weight": "kernel"}.get(parts[-1], parts[-1])
    return (*parts[:-1], leaf)


def _to_flax(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    a = np.asarray(value, dtype=np.float32)
    if path[-1] == "kernel" and a.ndim == 4:
        if path[-2] == "deconv":  # ConvTranspose2d weight (in, out, kh, kw)
            return np.ascontiguousarray(a.transpose(2, 3, 0, 1))
        return np.ascontiguousarray(a.transpose(2, 3, 1, 0))  # Conv2d weight (out, in, kh, kw)
    return a


def param_shapes(module: Any, *inputs: jax.ShapeDtypeStruct) -> dict[tuple[str, ...], tuple[int, ...]]:
    """``{flax path: shape}`` of ``module``'s params for example ``inputs`` (nothing computed)."""
    variables = jax.eval_shape(module.init, jax.random.key(0), *inputs)
    flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
    return {tuple(str(k.key) for k in kp): tuple(leaf.shape) for kp, leaf in flat}


def _expected_shapes(module: Any, bands: int, ratio: int) -> dict[tuple[str, ...], tuple[int, ...]]:
    h = 8
    lrms = jax.ShapeDtypeStruct((1, h, h, bands), jnp.float32)
    pan = jax.ShapeDtypeStruct((1, ratio * h, ratio * h, 1), jnp.float32)
    lms = jax.ShapeDtypeStruct((1, ratio * h, ratio * h, bands), jnp.float32)
    return param_shapes(module, lrms, pan, lms)


def _nest(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return out


def assemble_params(
    label: str,
    tensors: Iterable[tuple[str, tuple[str, ...], Callable[[], np.ndarray]]],
    expected: Mapping[tuple[str, ...], tuple[int, ...]],
) -> dict[str, Any]:
    """Check converted tensors against a module's param shapes and nest them as Flax params.

    Args:
      label: the network's name for error messages.
      tensors: ``(PyTorch name, Flax path, make)`` per state-dict entry; ``make()`` gives the
        array in Flax layout (called only for paths the module has). Entries mapping to the
        same path (storage aliases) must hold equal values.
      expected: ``{Flax path: shape}`` (:func:`param_shapes`).

    Raises:
      InputError: an unexpected, mis-shaped, conflicting or missing tensor.
    """
    converted: dict[tuple[str, ...], np.ndarray] = {}
    unexpected: list[str] = []
    for name, path, make in tensors:
        if path not in expected:
            unexpected.append(name)
            continue
        arr = make()
        if path in converted:  # an alias: must hold the same values
            if converted[path].shape != arr.shape or not np.array_equal(converted[path], arr):
                raise InputError(f"{label}: '{name}' maps to {'/'.join(path)} but differs from the tensor already there")
            continue
        if tuple(arr.shape) != tuple(expected[path]):
            raise InputError(
                f"{label}: '{name}' has shape {tuple(arr.shape)} in Flax layout, but {'/'.join(path)} needs "
                f"{tuple(expected[path])} (not a {label} state dict?)"
            )
        converted[path] = arr
    if unexpected:
        raise InputError(f"{label}: unexpected tensors in the state dict: {', '.join(unexpected[:5])}")
    missing = ["/".join(p) for p in expected if p not in converted]
    if missing:
        raise InputError(f"{label}: state dict lacks {len(missing)} tensors, e.g. {', '.join(missing[:5])}")
    return _nest({p: jnp.asarray(a, jnp.float32) for p, a in converted.items()})


def convert(method: str, state_dict: Mapping[str, np.ndarray], bands: int | None = None) -> dict[str, Any]:
    """A PyTorch state dict of ``method`` -> Flax params (the dict under ``'params'``).

    Args:
      method: one of :data:`METHODS`.
      state_dict: ``{name: array}`` as :func:`load_torch_state_dict` returns (NumPy or
        anything ``np.asarray`` takes, e.g. CPU torch tensors); storage aliases may be present.
      bands: expected band count; None to accept what the shapes say.

    Returns:
      Nested dict of float32 ``jax.Array`` matching ``build_model(infer_config(...))``.
    """
    m = _method(method)
    cfg = infer_config(m, state_dict)
    if bands is not None and int(bands) != cfg.bands:
        raise InputError(f"{m} state dict is for {cfg.bands} bands, not {bands}")
    module = registry.build_model(cfg)
    expected = _expected_shapes(module, cfg.bands, int(cfg.get("ratio", 4)))
    tensors = (
        (name, path, lambda path=path, value=value: _to_flax(path, np.asarray(value)))
        for name, value in state_dict.items()
        for path in (_flax_path(m, name),)
    )
    return assemble_params(m, tensors, expected)


def import_weights(method: str, path: str | Path) -> tuple[dict[str, Any], ml_collections.ConfigDict]:
    """Read a released PyTorch checkpoint (without PyTorch) -> ``(params, model_config)``.

    The band count and sizes come from the tensor shapes (e.g. 8 bands for the WV2/WV3
    files, 4 for QB/WV4).
    """
    key = str(method).strip().lower().replace("-", "_")
    if key in _OWN_IMPORTERS:
        module_name, attr = _OWN_IMPORTERS[key].split(":")
        return getattr(importlib.import_module(module_name), attr)(path)
    m = _method(method)
    sd = load_torch_state_dict(path)
    cfg = infer_config(m, sd)
    return convert(m, sd, cfg.bands), cfg

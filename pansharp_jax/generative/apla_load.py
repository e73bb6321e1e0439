"""Stable Diffusion weights from a local diffusers folder, converted to our Flax params.

Nothing is downloaded and no code from a weight file runs: ``.safetensors`` files are read
with ``safetensors.numpy``; PyTorch ``.bin`` / ``.pt`` files with the restricted unpickler of
:mod:`pansharp_jax.models.torch_reader` (a sibling floor-2 module; it runs no pickled code).

Folder layout (the diffusers pipeline layout; each part optional for :func:`load_part`):
``unet/config.json`` + ``unet/diffusion_pytorch_model[.fp16].{safetensors,bin}``,
``vae/config.json`` + ``vae/diffusion_pytorch_model.*``, ``text_encoder/config.json`` +
``text_encoder/model[.fp16].safetensors`` or ``pytorch_model.bin``, ``tokenizer/{vocab.json,
merges.txt}``, ``scheduler/scheduler_config.json``.

Key mapping (:func:`convert_state_dict`): a PyTorch key ``a.b.0.c.weight`` is the Flax path
``a / b_0 / c / <leaf>``; the leaf is chosen by what our model has there: ``kernel`` (convs
OIHW -> HWIO, linears (out, in) -> (in, out); a 1x1-conv weight for a linear target is
squeezed), ``scale`` (norm weights), ``embedding`` (embedding tables), ``bias``. Old VAE
attention names (``query``, ``key``, ``value``, ``proj_attn``) are renamed to ``to_q``,
``to_k``, ``to_v``, ``to_out.0``; ``text_model.embeddings.position_ids`` is ignored. Any
other unmatched key, missing parameter or shape mismatch raises an InputError naming it,
except parameters listed as new (the temporal layers ``attn_temp``/``norm_temp``), which keep
their initial values. Half-precision weights are cast to float32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pansharp_jax.errors import InputError

NEW_PARAMS = ("attn_temp", "norm_temp")
_RENAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_IGNORED = ("text_model.embeddings.position_ids",)


def flax_path(key: str) -> tuple[tuple[str, ...], str]:
    """PyTorch key -> (Flax module path, PyTorch leaf name): ``down_blocks.0.conv.weight`` -> ((down_blocks_0, conv), weight)."""
    parts = key.split(".")
    *mods, leaf = parts
    mods = [_RENAMES.get(m, m) if i == len(mods) - 1 else m for i, m in enumerate(mods)]
    mods = ".".join(mods).split(".")
    out: list[str] = []
    for m in mods:
        if m.isdigit() and out:
            out[-1] = f"{out[-1]}_{m}"
        else:
            out.append(m)
    return tuple(out), leaf


def _convert_leaf(arr: np.ndarray, leaf: str, target: dict[str, Any], key: str) -> tuple[str, np.ndarray]:
    a = np.asarray(arr)
    a = a.astype(np.float32) if a.dtype.kind == "f" or a.dtype == np.uint16 else a
    if leaf == "bias":
        return "bias", a
    if leaf != "weight":
        raise InputError(f"unexpected parameter {key!r}")
    if "embedding" in target:
        return "embedding", a
    if "scale" in target:
        return "scale", a
    if "kernel" not in target:
        raise InputError(f"no weight at {key!r} in the model")
    kshape = tuple(target["kernel"].shape)
    if a.ndim == 4 and len(kshape) == 2:
        a = a[:, :, 0, 0]
    if a.ndim == 4:
        return "kernel", a.transpose(2, 3, 1, 0)
    if a.ndim == 2:
        return "kernel", a.T
    raise InputError(f"weight {key!r} has {a.ndim} dimensions")


def convert_state_dict(state: dict[str, np.ndarray], target: Any, *, prefix: str = "", what: str = "weights") -> dict[str, Any]:
    """A PyTorch-named state dict -> a params tree shaped as ``target`` (a params tree or its shapes).

    ``prefix`` is stripped from every key first (e.g. ``"encoder."`` is kept for the VAE; none
    for the UNet). Leaves of ``target`` under :data:`NEW_PARAMS` missing from ``state`` keep
    the value in ``target`` (which must then hold arrays). Raises InputError on any unmatched
    key, missing parameter or shape mismatch (module docstring).
    """
    flat_t = {tuple(str(getattr(k, "key", k)) for k in p): v for p, v in jax.tree_util.tree_leaves_with_path(target)}
    out: dict[tuple[str, ...], Any] = {}
    for key, arr in state.items():
        if key in _IGNORED:
            continue
        k = key[len(prefix) :] if prefix and key.startswith(prefix) else key
        mods, leaf = flax_path(k)
        node = {p[-1]: v for p, v in flat_t.items() if p[:-1] == mods}
        if not node:
            raise InputError(f"{what}: parameter {key!r} has no counterpart in the model (another architecture or config?)")
        name, val = _convert_leaf(arr, leaf, node, key)
        if name not in node:
            raise InputError(f"{what}: parameter {key!r} has no counterpart in the model")
        if tuple(val.shape) != tuple(node[name].shape):
            raise InputError(f"{what}: {key!r} has shape {tuple(np.shape(arr))}, the model wants {tuple(node[name].shape)} (as {name})")
        out[mods + (name,)] = val
    missing = [p for p in flat_t if p not in out and not any(n in seg for seg in p for n in NEW_PARAMS)]
    if missing:
        raise InputError(f"{what}: {len(missing)} parameters missing from the file, e.g. {'/'.join(missing[0])}")
    for p, v in flat_t.items():
        if p not in out:
            out[p] = np.asarray(v)
    tree: dict[str, Any] = {}
    for p, v in out.items():
        node = tree
        for s in p[:-1]:
            node = node.setdefault(s, {})
        node[p[-1]] = v
    return tree


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """A ``.safetensors`` file or a PyTorch checkpoint (``.bin``, ``.pt``, ``.pth``) -> {name: array}, no code run."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weight file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as e:  # noqa: BLE001 - corrupt file
            raise InputError(f"cannot read {path.name}: {type(e).__name__}: {e}") from None
    from pansharp_jax.models.torch_reader import load_torch_state_dict

    return load_torch_state_dict(path)


def find_weights(folder: Path, stems: tuple[str, ...]) -> Path:
    """The first existing ``<stem>[.fp16].{safetensors,bin}`` in ``folder``; InputError otherwise."""
    for stem in stems:
        for name in (f"{stem}.safetensors", f"{stem}.fp16.safetensors", f"{stem}.bin", f"{stem}.fp16.bin"):
            if (folder / name).is_file():
                return folder / name
    raise InputError(f"no weights in {folder}: expected {stems[0]}.safetensors or {stems[0]}.bin")


def read_config(folder: Path, name: str = "config.json") -> dict[str, Any]:
    """``folder/name`` as a dict; InputError when missing or malformed."""
    path = Path(folder) / name
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise InputError(f"{path} not found: is this a diffusers model folder?") from None
    except (ValueError, TypeError) as e:
        raise InputError(f"{path} is not a JSON object: {e}") from None


PARTS = {"unet": ("diffusion_pytorch_model",), "vae": ("diffusion_pytorch_model",), "text_encoder": ("model", "pytorch_model")}


def load_part(folder: str | Path, part: str, target: Any) -> dict[str, Any]:
    """The converted params of ``part`` (``unet``, ``vae``, ``text_encoder``) of a diffusers folder, shaped as ``target``."""
    if part not in PARTS:
        raise InputError(f"unknown model part {part!r}: use {', '.join(PARTS)}")
    sub = Path(folder) / part
    return convert_state_dict(read_weights(find_weights(sub, PARTS[part])), target, what=f"{part} weights")


def scheduler_betas(folder: str | Path | None) -> np.ndarray:
    """Betas (T,) from ``scheduler/scheduler_config.json`` (``linear`` or ``scaled_linear``);
    SD 1.x's ``scaled_linear`` 0.00085 -> 0.012 over 1000 steps when there is no such file."""
    cfg = {}
    if folder is not None and (Path(folder) / "scheduler" / "scheduler_config.json").is_file():
        cfg = read_config(Path(folder) / "scheduler", "scheduler_config.json")
    return sd_betas(int(cfg.get("num_train_timesteps", 1000)), float(cfg.get("beta_start", 0.00085)),
                    float(cfg.get("beta_end", 0.012)), str(cfg.get("beta_schedule", "scaled_linear")))  # fmt: skip


def sd_betas(T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012, kind: str = "scaled_linear") -> np.ndarray:
    """Stable Diffusion's betas (T,) float64: ``scaled_linear`` = linspace of square roots, squared."""
    if kind == "scaled_linear":
        return np.linspace(beta_start**0.5, beta_end**0.5, T, dtype=np.float64) ** 2
    if kind == "linear":
        return np.linspace(beta_start, beta_end, T, dtype=np.float64)
    raise InputError(f"unsupported beta_schedule {kind!r}: use linear or scaled_linear")


__all__ = ["flax_path", "convert_state_dict", "read_weights", "find_weights", "read_config", "load_part",
           "scheduler_betas", "sd_betas", "NEW_PARAMS", "PARTS"]  # fmt: skip

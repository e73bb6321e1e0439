"""The run folder (``--workdir``): its saved config, its checkpoints, checks before a run starts.

A workdir holds ``config.json`` (the config of the latest run in it, written atomically at the
start of every run by :func:`write_config`), ``checkpoints/<step>/`` (Orbax; each step also
stores the config it was saved with) and, with W&B on, ``wandb/``. Everything here reads plain
files only (no Orbax, no JAX), so a wrong workdir is refused before any data is prepared:

* :func:`saved_config`: the run's config as a plain dict (``config.json``; for workdirs written
  before that file existed, the config JSON of the latest checkpoint step), or None;
* :func:`check_model`: a one-line :class:`~pansharp_jax.errors.InputError` when the workdir
  holds a run of another model;
* :func:`checkpoint_steps`, :func:`config_changes`, :func:`resume_command`.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pansharp_jax.errors import InputError

__all__ = [
    "CONFIG_FILE",
    "checkpoint_steps",
    "check_model",
    "config_changes",
    "format_change",
    "resume_command",
    "saved_config",
    "write_config",
]

CONFIG_FILE = "config.json"
"""The file in a workdir holding the config its latest run trained with (a JSON dict)."""

_ORBAX_JSON = "metadata"  # Orbax's JsonCheckpointHandler writes an item as <step>/<item>/metadata


def checkpoint_steps(workdir: str | os.PathLike[str]) -> list[int]:
    """Steps of the complete checkpoints in ``<workdir>/checkpoints`` (sorted; [] if none).

    Orbax writes a step into a temporary folder and renames it to ``<step>`` when complete,
    so only folders named by a number count.
    """
    folder = Path(workdir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def saved_config(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The config a run in ``workdir`` was trained with, as a plain dict, or None if none.

    Read from ``<workdir>/config.json``; a workdir without it (written by an older version)
    falls back to the config stored with its latest checkpoint step.

    Raises:
      InputError: ``config.json`` exists but is not a JSON object.
    """
    path = Path(workdir) / CONFIG_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {path}: {e}") from None
        if not isinstance(data, dict):
            raise InputError(f"{path} does not hold a config (a JSON object)")
        return data
    for step in reversed(checkpoint_steps(workdir)):
        item = Path(workdir) / "checkpoints" / str(step) / "config" / _ORBAX_JSON
        try:
            data = json.loads(item.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None


def write_config(workdir: str | os.PathLike[str], config: Mapping[str, Any]) -> Path:
    """Write ``config`` (a JSON-able dict) to ``<workdir>/config.json`` atomically.

    The JSON goes to a temporary file in the same folder, is flushed to disk, and replaces
    ``config.json`` in one rename, so a reader sees the old file or the new one, never a part.
    """
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CONFIG_FILE
    text = json.dumps(dict(config), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{CONFIG_FILE}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _model_name(config: Mapping[str, Any] | None) -> str:
    model = (config or {}).get("model")
    name = model.get("name") if isinstance(model, Mapping) else None
    return str(name) if name else ""


def check_model(workdir: str | os.PathLike[str], saved: Mapping[str, Any] | None, model_name: str) -> None:
    """Refuse to train ``model_name`` in a workdir whose saved run (``saved``) is another model.

    ``saved`` is :func:`saved_config` of ``workdir`` (None: nothing saved, nothing to check).

    Raises:
      InputError: ``workdir runs/x holds a fusionnet run; this config trains cannet: use another --workdir``.
    """
    have = _model_name(saved)
    if have and model_name and have.lower() != str(model_name).lower():
        raise InputError(
            f"workdir {os.fspath(workdir)} holds a {have} run; this config trains {model_name}: use another --workdir"
        )


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, Mapping) and (d or not prefix):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


_MISSING = object()


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` of every leaf that differs, sorted by key.

    Both are plain nested dicts (lists and tuples compare equal element by element). A key
    present on one side only is ``"(unset)"`` on the other.
    """
    a, b = _flat(dict(old)), _flat(dict(new))
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, _MISSING), b.get(key, _MISSING)
        if x is _MISSING or y is _MISSING or not _same(x, y):
            out.append((key, "(unset)" if x is _MISSING else x, "(unset)" if y is _MISSING else y))
    return out


def format_change(key: str, old: Any, new: Any) -> str:
    """``config.KEY: old -> new`` (values as Python literals; lists shown as tuples)."""

    def show(v: Any) -> str:
        if isinstance(v, list):
            v = tuple(v)
        return v if v == "(unset)" else repr(v)

    return f"config.{key}: {show(old)} -> {show(new)}"


def resume_command(workdir: str | os.PathLike[str]) -> str:
    """The shell command that continues the run in ``workdir``: ``pansharp train --workdir W --resume``."""
    return f"pansharp train --workdir {shlex.quote(os.fspath(workdir))} --resume"

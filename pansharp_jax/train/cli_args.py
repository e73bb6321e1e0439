"""Configs as Python files with ``get_config()``, overridable from the command line.

``load_config("configs/fusionnet_wv3.py", ["--config.optim.lr=1e-3", "--config.steps=500"])``
loads the file, calls ``get_config()`` (``"file.py:arg"`` calls ``get_config("arg")``, as in
big_vision) and applies each override ``[--]config.a.b=value`` (the ``config.`` prefix is
optional). Values are parsed as Python literals and type-checked against the field they
replace: int -> float is widened, a bool accepts true/false/yes/no/1/0, a str takes the
text as is, a tuple/list accepts ``1,2,3`` or ``(1, 2, 3)``. An unknown key or a value of
the wrong type raises :class:`~pansharp_jax.errors.InputError` naming the key.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import ml_collections

from pansharp_jax.errors import InputError

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def load_sibling(file: str, name: str) -> ModuleType:
    """Import ``<dir of file>/<name>.py`` as a fresh module (configs share ``default.py`` this way)."""
    path = Path(file).resolve().with_name(f"{name}.py")
    return _import_file(path, f"_pansharp_config_{name}")


def _import_file(path: Path, module_name: str) -> ModuleType:
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import config file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load ``path`` (``file.py`` or ``file.py:arg``) and apply command-line ``overrides``."""
    text = os.fspath(path)
    arg = None
    if ":" in Path(text).name:
        text, _, arg = text.rpartition(":")
    module = _import_file(Path(text), f"_pansharp_config_{Path(text).stem}")
    if not hasattr(module, "get_config"):
        raise InputError(f"config file {text} has no get_config()")
    config = module.get_config() if arg is None else module.get_config(arg)
    if not isinstance(config, ml_collections.ConfigDict):
        raise InputError(f"get_config() in {text} must return an ml_collections.ConfigDict")
    apply_overrides(config, overrides)
    return config


def split_override(text: str) -> tuple[str, str]:
    """``--config.optim.lr=1e-3`` -> (``"optim.lr"``, ``"1e-3"``)."""
    s = text.strip()
    s = s[2:] if s.startswith("--") else s
    key, sep, value = s.partition("=")
    if not sep or not key:
        raise InputError(f"override {text!r} must look like --config.KEY=VALUE")
    key = key.strip()
    if key.startswith("config."):
        key = key[len("config.") :]
    return key, value.strip()


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Apply ``KEY=VALUE`` overrides in place (see module docstring); returns ``config``."""
    for text in overrides:
        key, raw = split_override(text)
        parent, leaf = _walk(config, key)
        old = parent[leaf]
        try:
            parent[leaf] = _parse_like(old, raw, key)
        except TypeError as e:  # ConfigDict's own type check (e.g. FieldReference)
            raise InputError(f"bad value for config.{key}: {e}") from None
    return config


def _walk(config: ml_collections.ConfigDict, key: str) -> tuple[ml_collections.ConfigDict, str]:
    node: Any = config
    parts = key.split(".")
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if not isinstance(node, ml_collections.ConfigDict):
            raise InputError(f"unknown config key '{key}': '{'.'.join(parts[:i])}' is not a group")
        if part not in node:
            close = difflib.get_close_matches(part, list(node.keys()), n=3)
            hint = f"; did you mean {', '.join('.'.join(parts[:i] + [c]) for c in close)}?" if close else ""
            known = ", ".join(sorted(node.keys()))
            raise InputError(f"unknown config key '{here}'{hint} (known here: {known})")
        if i == len(parts) - 1:
            return node, part
        node = node[part]
    raise InputError(f"empty config key in override {key!r}")  # pragma: no cover


def _literal(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _parse_like(old: Any, raw: str, key: str) -> Any:
    def bad(expected: str) -> InputError:
        return InputError(f"bad value for config.{key}: expected {expected}, got {raw!r}")

    if isinstance(old, ml_collections.ConfigDict):
        raise InputError(f"config.{key} is a group; override its fields (config.{key}.FIELD=VALUE)")
    if isinstance(old, bool):
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise bad("a boolean (true/false)")
    if isinstance(old, int):
        value = _literal(raw)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad("an integer")
        return value
    if isinstance(old, float):
        value = _literal(raw)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(old, str):
        value = _literal(raw)
        return value if isinstance(value, str) else raw
    if isinstance(old, (tuple, list)):
        value = _literal(raw)
        if isinstance(value, (int, float, str)) and "," not in raw:
            value = (value,)
        elif not isinstance(value, (tuple, list)):
            value = tuple(_literal(p.strip()) for p in raw.split(",") if p.strip())
        if old and not all(
            isinstance(v, type(old[0])) or (isinstance(old[0], float) and isinstance(v, int)) for v in value
        ):
            raise bad(f"a sequence of {type(old[0]).__name__}")
        return type(old)(value)
    if old is None:
        return _literal(raw)
    value = _literal(raw)
    if not isinstance(value, type(old)):
        raise bad(type(old).__name__)
    return value


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """A JSON-friendly plain dict of ``config`` (tuples become lists)."""

    def conv(x: Any) -> Any:
        if isinstance(x, ml_collections.ConfigDict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, (tuple, list)):
            return [conv(v) for v in x]
        return x

    return conv(config)


def main_args(argv: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Split argv into (config overrides ``--config.*=``, everything else)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    return overrides, rest

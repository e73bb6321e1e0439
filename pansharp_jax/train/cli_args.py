"""Configs as Python files with ``get_config()``, overridable from the command line.

``load_config("configs/fusionnet_wv3.py", ["--config.optim.lr=1e-3", "--config.steps=500"])``
loads the file, calls ``get_config()`` (``"file.py:arg"`` calls ``get_config("arg")``, as in
big_vision) and applies each override ``[--]config.a.b=value`` (the ``config.`` prefix is
optional). Values are parsed as Python literals and type-checked against the field they
replace: int -> float is widened, a bool accepts true/false/yes/no/1/0, a str takes the
text as is, a tuple/list accepts ``1,2,3`` or ``(1, 2, 3)``. An unknown key or a value of
the wrong type raises :class:`~pansharp_jax.errors.InputError` naming the key.

``FILE.py:ARG``: the ARGs a config file accepts are its module-level ``CONFIG_ARGS`` tuple when
it defines one (``CONFIG_ARGS = None``: any ARG), else the strings that the file, or a sibling
it loads with :func:`load_sibling`, compares ``arg`` (``get_config``'s parameter) with
(``arg == "smoke"``), plus a string default of that parameter (:func:`config_args`). An ARG
outside a known set, an ARG for a ``get_config()`` without a parameter, and any ARG that makes
``get_config`` raise are refused with a one-line InputError (listing the valid ARGs when known).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
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
    if arg is None:
        config = module.get_config()
    else:
        config = _call_with_arg(module, Path(text), arg)
    if not isinstance(config, ml_collections.ConfigDict):
        raise InputError(f"get_config() in {text} must return an ml_collections.ConfigDict")
    apply_overrides(config, overrides)
    return config


def _call_with_arg(module: ModuleType, path: Path, arg: str) -> Any:
    """``module.get_config(arg)``, refusing unknown ARGs with a one-line InputError."""
    try:
        params = inspect.signature(module.get_config).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins / odd callables
        params = None
    if params is not None and not params:
        raise InputError(f"config {path}:{arg}: get_config() in {path.name} takes no ARG; drop ':{arg}'")
    valid = config_args(module, path)
    shown = f"valid ARGs: {', '.join(valid)} (or none: {path.name} alone)" if valid else ""
    if valid is not None and arg not in valid:
        close = difflib.get_close_matches(arg, list(valid), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise InputError(f"unknown config ARG '{arg}' in {path}:{arg}; {hint}{shown}")
    try:
        return module.get_config(arg)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of get_config(arg) is a bad ARG
        why = " ".join(f"{type(e).__name__}: {e}".split())
        tail = f"; {shown}" if valid else ""
        raise InputError(f"config {path}:{arg}: get_config('{arg}') failed ({why}){tail}") from None


def config_args(module: ModuleType, path: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """The ARGs ``path`` (a config file, imported as ``module``) accepts, or None when unknown.

    ``module.CONFIG_ARGS`` when defined (a tuple of strings; None: any ARG). Otherwise a static
    read of the source: every string that ``get_config``'s parameter (or a name ``arg``) is
    compared with (``==``, ``!=``, ``in``, ``not in``) in the file and in the sibling files it
    loads with ``load_sibling(__file__, "name")`` (recursively), plus a string default of the
    parameter. None when nothing is found (a free-form ARG, e.g. a step count).
    """
    if hasattr(module, "CONFIG_ARGS"):
        declared = module.CONFIG_ARGS
        return None if declared is None else tuple(str(a) for a in declared)
    names = {"arg"}
    found: set[str] = set()
    try:
        params = list(inspect.signature(module.get_config).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover
        params = []
    if params:
        names.add(params[0].name)
        if isinstance(params[0].default, str) and params[0].default:
            found.add(params[0].default)
    seen: set[Path] = set()
    todo = [Path(path).resolve()]
    while todo:
        file = todo.pop()
        if file in seen or not file.is_file():
            continue
        seen.add(file)
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                found.update(_compared_strings(node, names))
            elif isinstance(node, ast.Call) and _call_name(node.func) == "load_sibling" and len(node.args) >= 2:
                sib = node.args[1]
                if isinstance(sib, ast.Constant) and isinstance(sib.value, str):
                    todo.append(file.with_name(f"{sib.value}.py"))
    return tuple(sorted(found)) or None


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _strings(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _compared_strings(node: ast.Compare, names: set[str]) -> list[str]:
    sides = [node.left, *node.comparators]
    ops = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)
    out: list[str] = []
    for i, op in enumerate(node.ops):
        if not isinstance(op, ops):
            continue
        a, b = sides[i], sides[i + 1]
        for x, y in ((a, b), (b, a)):
            if isinstance(x, ast.Name) and x.id in names:
                out.extend(_strings(y))
    return out


def config_from_dict(data: dict[str, Any]) -> ml_collections.ConfigDict:
    """A ConfigDict from a plain (JSON) dict, e.g. a run's saved ``config.json``; lists become tuples."""

    def conv(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): conv(v) for k, v in x.items()}
        if isinstance(x, list):
            return tuple(conv(v) for v in x)
        return x

    return ml_collections.ConfigDict(conv(dict(data)))


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

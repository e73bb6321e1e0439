"""Shared fixtures: real data and weights found through PANSHARP_DATA / PANSHARP_WEIGHTS, and the
experiment scripts (``experiments/*.py``) loaded as modules."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from pansharp_jax.runtime import use_fast_compile

REPO = Path(__file__).resolve().parents[1]

# The CLI and trainer switch on JAX's persistent compilation cache (pansharp_jax.runtime); the
# suite keeps the user's cache folder untouched and its timings independent of earlier runs.
os.environ.setdefault("PANSHARP_COMPILATION_CACHE", "off")

# Much of the suite's time is XLA:CPU compiling small programs, and much of that is LLVM
# optimising the generated code. The tests' arrays are small, so they compile with those
# optimisations off (pansharp_jax.runtime.use_fast_compile; the README's "Compile time" has the
# suite's time both ways); the arithmetic stays IEEE float (no fast-math), only the order of
# some roundings can differ. A level set in XLA_FLAGS by the user wins.
use_fast_compile()


def _env_dir(var: str) -> Path | None:
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder (``PANSHARP_DATA``); skips the test when absent."""
    path = _env_dir("PANSHARP_DATA")
    if path is None:
        pytest.skip("PANSHARP_DATA is unset or not a folder: real-data test skipped (CI sets it to ../shared/data)")
    return path


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """The shared released-weights folder (``PANSHARP_WEIGHTS``); skips the test when absent."""
    path = _env_dir("PANSHARP_WEIGHTS")
    if path is None:
        pytest.skip("PANSHARP_WEIGHTS is unset or not a folder: weights test skipped (CI sets it to ../shared/weights)")
    return path


def _load_experiment(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="session")
def experiment() -> Callable[[str], ModuleType]:
    """``experiment("cave_table")``: the script ``experiments/cave_table.py`` as a fresh module."""
    return _load_experiment

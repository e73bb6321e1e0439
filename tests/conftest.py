"""Shared fixtures: real data and weights found through PANSHARP_DATA / PANSHARP_WEIGHTS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The CLI and trainer switch on JAX's persistent compilation cache (pansharp_jax.runtime); the
# suite keeps the user's cache folder untouched and its timings independent of earlier runs.
os.environ.setdefault("PANSHARP_COMPILATION_CACHE", "off")


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

"""Timing helper shared by the benchmark scripts (run them from anywhere: python benchmarks/X.py)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def first_and_median(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Seconds of the first call of ``fn`` (compilation included) and the median of ``runs``
    further calls (NaN when ``runs`` is 0)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times) if times else float("nan")

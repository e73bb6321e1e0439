"""How far to unroll a compiled loop over repeated layers (``nn.scan``'s ``unroll``), per backend."""

from __future__ import annotations

import jax

from pansharp_jax.errors import InputError


def resolve_unroll(scan_unroll: int, stages: int, backend: str | None = None) -> int:
    """A scan's ``unroll`` over ``stages`` repeated layers: ``scan_unroll`` when > 0, else
    ``stages`` on the CPU and 1 on accelerators.

    Why: on XLA:CPU the reverse pass of a rolled loop of convolution layers ran 10-13x slower
    than the same layers unrolled (the deep unfolding: 15 s against 1.0 s per batch-16 step of
    64 x 64 patches; PanAdapter's EDSR body, 8 blocks of 32 features: 18.5 s against 1.8 s per
    batch-8 step; the forward passes were the same). Unrolling keeps the stacked per-layer
    params and the scan's semantics; only the compiled program is ``stages`` copies long, so
    compile time grows with ``stages`` there (``benchmarks/unfolding_compile.py`` measures both).
    """
    if scan_unroll < 0:
        raise InputError(f"scan_unroll must be >= 0 (0: auto), got {scan_unroll}")
    if scan_unroll:
        return min(int(scan_unroll), int(stages))
    return int(stages) if (backend or jax.default_backend()) == "cpu" else 1


__all__ = ["resolve_unroll"]

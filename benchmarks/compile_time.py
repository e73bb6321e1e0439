"""Compile time of every registry model's train step (the trainer's jitted step, abstract inputs).

For each model (``registry.default_config``, 8 bands; MHIF models infn/feinfn with their own
31-band LR-HSI, 3-band guide and ratio) the trainer's train step at ``--batch`` (default 32)
on ``--size`` x ``--size`` guide patches (default 64) is lowered and compiled, as
``train_memory.py`` does (same builder, :mod:`_train_step_build`), with XLA:CPU's low-memory
scheduler as the trainer's entry points use it. Prints a Markdown table: model, batch,
compile seconds (lower + compile; wall clock, which a shared machine's load inflates, and the
process's CPU time), planned temporaries GiB.

Usage::

    python benchmarks/compile_time.py
    python benchmarks/compile_time.py --models fusionmamba,le_mamba --batch 32
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _train_step_build as tsb  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated registry names (default: all)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--bands", type=int, default=8)
    args = p.parse_args(argv)
    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()
    import jax

    from pansharp_jax.models import registry

    models = [m.strip() for m in args.models.split(",") if m.strip()] or registry.names()
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}; batch {args.batch}, {args.size}x{args.size}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| model | batch | compile s | compile CPU s | temp GiB |\n|---|---:|---:|---:|---:|", flush=True)
    for name in models:
        try:
            r = tsb.compile_train_step(name, args.batch, size=args.size, bands=args.bands)
        except Exception as e:  # noqa: BLE001  (report and go on)
            print(f"| {name} | {args.batch} | failed: {type(e).__name__}: {str(e).splitlines()[0][:100]} | | |", flush=True)
            continue
        print(f"| {name} | {r.batch} | {r.compile_s:.1f} | {r.compile_cpu_s:.1f} | {r.temp / tsb.GIB:.2f} |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compile time of every registry model's train step (the trainer's jitted step, abstract inputs).

For each model (``registry.default_config``, 8 bands; MHIF models infn/feinfn with their own
31-band LR-HSI, 3-band guide and ratio) the trainer's train step at ``--batch`` (default 32)
on ``--size`` x ``--size`` guide patches (default 64) is lowered and compiled, as
``train_memory.py`` does (same builder, :mod:`_train_step_build`), with XLA:CPU's low-memory
scheduler as the trainer's entry points use it. Prints a Markdown table: model, batch,
compile seconds (lower + compile; wall clock, which a shared machine's load inflates, and the
process's CPU time), planned temporaries GiB. ``--time-steps N`` also runs the compiled step
on random inputs and adds the median of N timed steps (ms), so both sides of
``--fast-compile`` (:func:`pansharp_jax.runtime.use_fast_compile`: LLVM's optimisations off)
can be compared: compile seconds saved against step time lost.

Usage::

    python benchmarks/compile_time.py
    python benchmarks/compile_time.py --models fusionmamba,le_mamba --batch 32
    python benchmarks/compile_time.py --models fusionnet,le_mamba --batch 8 --time-steps 5 --fast-compile
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
    p.add_argument("--time-steps", type=int, default=0, help="also time N train steps on random inputs (median ms)")
    p.add_argument("--fast-compile", action="store_true", help="compile with LLVM's optimisations off (runtime.use_fast_compile)")
    args = p.parse_args(argv)
    from pansharp_jax.runtime import use_fast_compile, use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()
    if args.fast_compile:
        use_fast_compile()
    import jax

    from pansharp_jax.models import registry

    models = [m.strip() for m in args.models.split(",") if m.strip()] or registry.names()
    steps = args.time_steps > 0
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}; batch {args.batch}, {args.size}x{args.size}; "
          f"{'fast compile (LLVM optimisations off)' if args.fast_compile else 'default optimisation'}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| model | batch | compile s | compile CPU s | temp GiB |" + (" step ms |" if steps else "")
          + "\n|---|---:|---:|---:|---:|" + ("---:|" if steps else ""), flush=True)
    for name in models:
        try:
            r = tsb.compile_train_step(name, args.batch, size=args.size, bands=args.bands)
        except Exception as e:  # noqa: BLE001  (report and go on)
            empty = " | | |" + (" |" if steps else "")  # the row keeps the header's column count
            print(f"| {name} | {args.batch} | failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}{empty}", flush=True)
            continue
        step = f" {1e3 * tsb.time_steps(r, args.time_steps):.1f} |" if steps else ""
        print(f"| {name} | {r.batch} | {r.compile_s:.1f} | {r.compile_cpu_s:.1f} | {r.temp / tsb.GIB:.2f} |{step}", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Planned memory of every registry model's train step (XLA's buffer assignment; nothing is run).

For each model (``registry.default_config``, 8 bands; the MHIF models infn/feinfn keep their own
31-band LR-HSI, 3-band guide and ratio) and each batch of ``--batches``, the trainer's jitted
train step (``make_train_step``: L1 loss or the model's ``training_loss``, Adam) is lowered on
abstract ``--size`` x ``--size`` inputs and compiled; ``memory_analysis()`` gives the planned
temporaries ("temp": activations kept for the backward pass, gradients, scratch), the argument
and output buffers. Prints a Markdown table: model, batch, temp GiB, argument GiB, output GiB,
temp GiB per sample, compile seconds (lower + compile, on this machine's backend; wall clock
and the process's CPU time, which a shared machine's load inflates less).

``--top-buffers K`` (one model, the last batch) also lists the K largest temporary buffers of the
buffer assignment with the JAX operation that produced each, and the buffers live at the planned
peak grouped by JAX operation over the layers (XLA's dumped live-range report), so the cause is
visible: e.g. the associative scan's (directions, N, L, d, d_state) arrays kept for the backward
pass.
XLA:CPU's low-memory scheduler (:func:`pansharp_jax.runtime.use_low_memory_cpu_scheduler`) is
applied first, as the trainer's entry points do (``--concurrent-scheduler``: XLA's default
instead). ``--set key=value`` overrides model config fields (Python literals).

Usage::

    python benchmarks/train_memory.py --models fusionmamba,le_mamba --batches 1,2
    python benchmarks/train_memory.py --models fusionmamba --batches 2 --top-buffers 20
    python benchmarks/train_memory.py --models le_mamba --batches 2 --set scan_method=associative
    python benchmarks/compile_time.py --models fusionmamba,le_mamba   # compile seconds at batch 32

Compile on a 2-core CPU can take minutes for the Mamba models; the temporaries scale about
linearly with the batch, so small batches find causes and batch 32 confirms.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _train_step_build as tsb  # noqa: E402

HEADER = "| model | bands | batch | temp GiB | argument GiB | output GiB | temp GiB / sample | compile s | compile CPU s |"
RULE = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"


def table_row(r: tsb.StepReport) -> str:
    """One Markdown row of a :class:`~_train_step_build.StepReport`."""
    g = tsb.GIB
    return (
        f"| {r.model} | {r.bands} | {r.batch} | {r.temp / g:.3f} | {r.argument / g:.3f} | {r.output / g:.3f} | "
        f"{r.per_sample_gib:.3f} | {r.compile_s:.1f} | {r.compile_cpu_s:.1f} |"
    )


def parse_overrides(items: list[str]) -> dict:
    """``['key=value', ...]`` -> dict, values as Python literals (strings stay strings otherwise)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated registry names (default: all)")
    p.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--size", type=int, default=64, help="PAN / guide patch side")
    p.add_argument("--bands", type=int, default=8)
    p.add_argument("--top-buffers", type=int, default=0, help="list the K largest temporary buffers (one model)")
    p.add_argument(
        "--concurrent-scheduler", action="store_true",
        help="keep XLA:CPU's default scheduler (the trainer uses the low-memory one)",
    )  # fmt: skip
    p.add_argument("--set", action="append", default=[], help="model config override key=value (repeatable)")
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.top_buffers and len(args.models) != 1:
        p.error("--top-buffers needs exactly one model in --models")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dump = tempfile.mkdtemp(prefix="train_memory_") if args.top_buffers else None
    if dump:
        tsb.enable_buffer_dump(dump)
    if not args.concurrent_scheduler:
        from pansharp_jax.runtime import use_low_memory_cpu_scheduler

        use_low_memory_cpu_scheduler()
    import jax

    from pansharp_jax.models import registry

    models = args.models or registry.names()
    dev = jax.devices()[0]
    print(f"JAX {jax.__version__} on {dev.platform} ({getattr(dev, 'device_kind', dev)}); "
          f"{args.size}x{args.size} guide, {args.bands} bands (MHIF models: their own); "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; overrides {parse_overrides(args.set)}\n")
    print(HEADER + "\n" + RULE, flush=True)
    last = None
    for name in models:
        for b in args.batches:
            try:
                r = tsb.compile_train_step(name, b, size=args.size, bands=args.bands, overrides=parse_overrides(args.set))
            except Exception as e:  # noqa: BLE001  (report and go on with the other models)
                print(f"| {name} | - | {b} | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | | | | |", flush=True)
                continue
            print(table_row(r), flush=True)
            last = r
    if dump and last is not None:
        print(f"\nlargest temporary buffers of {last.model}, batch {last.batch} (bytes, HLO value, shape, JAX op):")
        for size, value, shape, op in tsb.top_buffers(dump, last.compiled.as_text(), args.top_buffers):
            print(f"  {size / tsb.GIB:8.3f} GiB  {value:<28} {shape:<34} {op}")
        peak, groups = tsb.peak_breakdown(dump, args.top_buffers)
        if groups:
            print(f"\nlive at the planned peak ({peak / tsb.GIB:.3f} GiB), grouped by JAX op over layers "
                  "(MiB, buffers, op; 'bwd:' = backward pass):")
            for size, count, group in groups:
                print(f"  {size / 2**20:9.1f} MiB {count:5d}  {group}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

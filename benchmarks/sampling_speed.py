"""Sampling speed of the diffusion core: samples/s of DDPM and DDIM, and vmapped vs looped sampling.

Usage::

    python benchmarks/sampling_speed.py [--sizes 64 256] [--nfe 1 4 16 64] [--samples 8]
        [--width tiny|small] [--bands 8] [--max-nfe-cpu 16] [--runs 3] [--quick]

For every PAN size, sampler (``ddpm``, ``ddim`` with eta 0) and number of network evaluations
(NFE = sampler steps, on a cosine schedule with T = 1000), one jitted
:func:`pansharp_jax.generative.diffusion.sample_hrms` call draws ``--samples`` fused images of
one scene (batch 1, ``--bands`` bands, condition ``[lms, pan]``) with a randomly initialised
:class:`pansharp_jax.nn.unet.UNet` (``tiny``: width 16, 2 levels; ``small``: width 32, 3 levels;
no attention). The first call (compile) is not timed; the median of ``--runs`` calls gives
samples/s. On the CPU, NFE above ``--max-nfe-cpu`` are skipped.

"vmap vs loop": for each size, the same S DDIM samples drawn by a Python loop over S calls of
the jitted single-sample :func:`~pansharp_jax.generative.diffusion.sample` (with the keys
``split(rng, S)[s]``, so the draws are equal) against the one vmapped call; speed-up = loop
time / vmapped time, at ``--loop-nfe`` (default: the smallest NFE run).

``--quick``: sizes 64 and 256, NFE 1 and 4, 4 samples, two timed runs.

On the CPU, expect a speed-up near (or below) 1: XLA's CPU convolutions cost the same per
sample at batch 1 and batch S (and a batch of S large images leaves the caches), so the loop
loses only its per-call overhead. The vmapped call pays off on accelerators, where one sample
of a small image does not fill the device.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

WIDTHS = {"tiny": dict(base=16, mults=(1, 2)), "small": dict(base=32, mults=(1, 2, 2))}


def _time(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """(compile + first call seconds, median seconds of ``runs`` further calls)."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--nfe", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--samplers", nargs="+", default=["ddpm", "ddim"], choices=["ddpm", "ddim"])
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--bands", type=int, default=8)
    ap.add_argument("--width", default="tiny", choices=sorted(WIDTHS))
    ap.add_argument("--max-nfe-cpu", type=int, default=16, help="skip larger NFE on the CPU")
    ap.add_argument("--loop-nfe", type=int, default=0, help="NFE of the vmap-vs-loop comparison (0: smallest)")
    ap.add_argument("--no-loop", action="store_true", help="skip the vmap-vs-loop comparison")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="sizes 64 256, NFE 1 4, 4 samples, 2 runs")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.nfe, args.samples, args.runs = [64, 256], [1, 4], 4, 2

    import jax
    import jax.numpy as jnp

    from pansharp_jax.generative import diffusion as d
    from pansharp_jax.nn.unet import UNet, unet_apply_fn

    dev = jax.devices()[0]
    on_cpu = dev.platform == "cpu"
    nfes = [n for n in args.nfe if not (on_cpu and n > args.max_nfe_cpu)]
    skipped = sorted(set(args.nfe) - set(nfes))
    module = UNet(out_channels=args.bands, groups=8, **WIDTHS[args.width])
    apply_fn = unet_apply_fn(module)
    probe = jnp.zeros((1, 16, 16, args.bands))
    params = jax.jit(module.init)(jax.random.key(0, impl="rbg"), probe, jnp.zeros((1,)), jnp.zeros((1, 16, 16, args.bands + 1)))["params"]
    n_params = sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
    sch = d.cosine_schedule(1000)
    S = int(args.samples)
    print(f"device: {dev.device_kind} ({dev.platform}); UNet '{args.width}' {WIDTHS[args.width]}, {n_params:,} params; "
          f"{args.bands} bands; batch 1 scene x {S} samples; T = 1000 cosine"
          + (f"; skipped NFE {skipped} on the CPU (--max-nfe-cpu {args.max_nfe_cpu})" if skipped else ""))  # fmt: skip

    rows = []
    loop_rows = []
    for size in args.sizes:
        k = jax.random.split(jax.random.PRNGKey(size), 2)
        lms = jax.random.uniform(k[0], (1, size, size, args.bands))
        pan = jax.random.uniform(k[1], (1, size, size, 1))
        rng = jax.random.PRNGKey(1)
        for sampler in args.samplers:
            for n in nfes:
                def vmapped(n: int = n, sampler: str = sampler) -> Any:
                    return d.sample_hrms(apply_fn, params, lms, pan, rng, sch, samples=S, steps=n, sampler=sampler,
                                         clip_x0=(-1.0, 1.0))  # fmt: skip
                first, sec = _time(vmapped, args.runs)
                rows.append((size, sampler, n, first, sec, S / sec))
                print(f"  {size}x{size} {sampler} NFE {n}: compile+first {first:.1f} s, {sec * 1e3:.1f} ms/call", flush=True)
        if args.no_loop or not nfes:
            continue
        n = args.loop_nfe or min(nfes)
        cond = d.pansharp_condition(lms, pan)
        keys = jax.random.split(rng, S)
        kw = dict(shape=tuple(lms.shape), steps=n, sampler="ddim", clip_x0=(-1.0, 1.0))

        def looped() -> Any:
            return [d.sample(apply_fn, params, cond, keys[s], sch, **kw) for s in range(S)]

        def vm() -> Any:
            return d.sample_many(apply_fn, params, cond, rng, sch, samples=S, **kw)

        _, t_loop = _time(looped, args.runs)
        _, t_vmap = _time(vm, args.runs)
        loop_rows.append((size, n, t_loop, t_vmap))

    print()
    print(f"{'size':>9} {'sampler':>7} {'NFE':>4} {'compile s':>9} {'ms/call':>9} {'samples/s':>10} {'ms/NFE/sample':>13}")
    for size, sampler, n, first, sec, sps in rows:
        print(f"{size:>4}x{size:<4} {sampler:>7} {n:>4} {first:>9.1f} {sec * 1e3:>9.1f} {sps:>10.2f} {sec * 1e3 / n / S:>13.2f}")
    if loop_rows:
        print()
        print(f"vmapped ({S} samples in one call) vs looped ({S} calls of the jitted single-sample sampler), DDIM:")
        print(f"{'size':>9} {'NFE':>4} {'loop ms':>9} {'vmap ms':>9} {'speed-up':>8}")
        for size, n, t_loop, t_vmap in loop_rows:
            print(f"{size:>4}x{size:<4} {n:>4} {t_loop * 1e3:>9.1f} {t_vmap * 1e3:>9.1f} {t_loop / t_vmap:>7.2f}x")


if __name__ == "__main__":
    main()

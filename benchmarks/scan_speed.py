"""Speed, peak memory and memory roofline of the selective-scan methods
(sequential / associative / chunked / pallas).

Usage::

    python benchmarks/scan_speed.py [--lengths 4096 65536] [--runs 5] [--chunk 128]
    python benchmarks/scan_speed.py --training-shapes [--bandwidth-gbs 4300]
    python benchmarks/scan_speed.py --models fusionmamba le_mamba [--sizes 64 128 256 512]

``--training-shapes`` replaces ``--lengths/--batch/--d/--n`` by the scans of FusionMamba and
LE-Mamba ('small') at their training crops (batch 32, 64 x 64 = 4096 tokens per direction):
FusionMamba d_inner 32, d_state 8; LE-Mamba global branch d_inner 96, d_state 32.

Roofline: "roof us" (microseconds) is the time to move the bytes a fused scan must move
(:func:`pansharp_jax.nn.selective_scan_pallas.roofline_bytes`; forward: read u, delta, z, B,
C, write y; fwd+bwd adds reading them and the cotangent of y again and writing the cotangents
of u, delta, z, B, C) at ``--bandwidth-gbs`` (default 4300 GB/s, an H200's HBM3e); "x roof"
is the measured time over it (1.0 = at the memory roofline). The ``'pallas'`` method runs in
Pallas interpret mode on the CPU, which says nothing about speed: there it is left out of the
table unless ``--pallas-interpret`` is given.

The second form times one training step (forward, backward, Adam update; batch 1, L1 loss) of
each Mamba network of the registry at each PAN size (official sizes: FusionMamba as released,
LE-Mamba's ``--le-size`` preset, default 'small'; ``--scan-method`` picks the scan, default
'sequential', the CPU's fastest; ``--directions serial --remat-blocks`` is the low-memory
setting that lets a 512 x 512 crop train on a 24 GiB CPU machine) and prints ms/step, ns per pixel and the growth relative to
the smallest size divided by the growth in pixels (1.0 = linear in pixels).

Shapes: batch 1, d = 64 channels, N = 16 states (``--d``, ``--n``, ``--batch`` change them).
Each call is the models' form: float32 inputs with the D term, the silu(z) gate and a
softplus(delta + delta_bias) step. Each case (method x shape x pass) runs in its own
subprocess so its peak memory is its own: the subprocess imports JAX, builds the inputs,
compiles (``jax.jit``; the warm-up call is not timed), then times ``--runs`` calls and
reports the median as tokens/s (batch * L / seconds). "fwd" is ``selective_scan`` alone;
"fwd+bwd" is ``jax.grad`` of ``sum(y)`` with respect to every input (u, delta, A, B, C, D,
z, delta_bias; this includes its forward pass).

Peak memory: the device's ``memory_stats()['peak_bytes_in_use']`` when the backend reports
it (GPU/TPU); otherwise (the CPU) the growth of the subprocess's max RSS
(``resource.getrusage``) from just before the inputs are built to the end, which includes
compilation and the inputs themselves. The table says which was used.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASES = [
    ("sequential", False),
    ("associative", False),
    ("chunked", False),
    ("chunked", True),  # remat
    ("pallas", False),
]

# (label, batch, L, D, N): the scans of one direction at the models' training crops (64 x 64)
TRAINING_SHAPES = [
    ("fusionmamba", 32, 4096, 32, 8),
    ("le_mamba/s", 32, 4096, 96, 32),
]


def _child(args: argparse.Namespace) -> None:
    import resource
    import statistics
    import time

    import jax
    import jax.numpy as jnp

    from pansharp_jax.nn.selective_scan import selective_scan

    jax.block_until_ready(jnp.ones(4) + 1)  # backend up before the baseline
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dev = jax.devices()[0]
    b, L, d, n = args.batch, args.length, args.d, args.n
    k = jax.random.split(jax.random.PRNGKey(0), 8)
    u = jax.random.normal(k[0], (b, L, d))
    delta = jax.random.normal(k[1], (b, L, d)) - 2.0
    A = -jnp.exp(jax.random.normal(k[2], (d, n)))
    B = jax.random.normal(k[3], (b, L, n))
    C = jax.random.normal(k[4], (b, L, n))
    D = jax.random.normal(k[5], (d,))
    z = jax.random.normal(k[6], (b, L, d))
    bias = 0.1 * jax.random.normal(k[7], (d,))
    inputs = (u, delta, A, B, C, D, z, bias)
    kw = dict(method=args.method, chunk=args.chunk, remat=args.remat)

    if args.backward:
        fn = jax.jit(jax.grad(lambda *a: jnp.sum(selective_scan(*a, **kw)), argnums=tuple(range(len(inputs)))))
    else:
        fn = jax.jit(lambda *a: selective_scan(*a, **kw))
    jax.block_until_ready(fn(*inputs))  # compile + warm up
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*inputs))
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)

    stats = None
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        peak, how = stats["peak_bytes_in_use"], "device peak_bytes_in_use"
    else:
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        peak, how = (rss1 - rss0) * scale, "max-RSS growth"
    print(json.dumps(dict(sec=sec, tok_s=b * L / sec, peak=peak, how=how, device=str(dev))))


def _model_child(args: argparse.Namespace) -> None:
    """One (model, size) train-step timing; prints a JSON line."""
    import resource
    import statistics
    import time

    import jax
    import jax.numpy as jnp
    import optax

    from pansharp_jax.models import registry

    jax.block_until_ready(jnp.ones(4) + 1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = registry.default_config(args.model)
    cfg.bands = 8
    cfg.scan_method = args.scan_method
    cfg.scan_directions = args.directions
    cfg.remat_blocks = bool(args.remat_blocks)
    if args.model == "le_mamba":
        cfg.size = args.le_size
        cfg.drop_path = 0.0
    module = registry.build_model(cfg)
    s, r = args.size, 4
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    lrms = jax.random.uniform(k[0], (1, s // r, s // r, 8))
    pan = jax.random.uniform(k[1], (1, s, s, 1))
    lms = jax.image.resize(lrms, (1, s, s, 8), "cubic")
    gt = jax.random.uniform(k[2], (1, s, s, 8))
    params = jax.jit(module.init)(jax.random.PRNGKey(1), lrms, pan, lms)["params"]
    tx = optax.adam(1e-4)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt):
        loss, g = jax.value_and_grad(lambda p: jnp.mean(jnp.abs(module.apply({"params": p}, lrms, pan, lms) - gt)))(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, loss

    t0 = time.perf_counter()
    params, opt, loss = jax.block_until_ready(step(params, opt))  # compile + first step
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        params, opt, loss = jax.block_until_ready(step(params, opt))
        times.append(time.perf_counter() - t0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    print(json.dumps(dict(sec=statistics.median(times), compile=compile_s, peak=(rss1 - rss0) * scale, params=int(n_params),
                          device=str(jax.devices()[0]))))


def _models_table(args: argparse.Namespace) -> None:
    import jax

    print(f"device: {jax.devices()[0]} ({jax.default_backend()}); train step, batch 1, scan {args.scan_method}, "
          f"directions {args.directions}, remat_blocks {bool(args.remat_blocks)}, LE-Mamba preset {args.le_size}, "
          f"median of {args.runs} steps after compile; peak = max-RSS growth")
    print(f"{'model':<13}{'PAN':>6}{'params':>10}{'ms/step':>11}{'ns/pixel':>10}{'growth/pixels':>15}{'compile s':>11}{'peak MiB':>10}")
    for model in args.models:
        base = None
        for size in args.sizes:
            cmd = [sys.executable, __file__, "--model-child", "--model", model, "--size", str(size), "--runs", str(args.runs),
                   "--scan-method", args.scan_method, "--le-size", args.le_size, "--directions", args.directions]
            cmd += ["--remat-blocks"] if args.remat_blocks else []
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                tail = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode
                print(f"{model:<13}{size:>6}  failed: {tail}", flush=True)
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            per_pixel = r["sec"] / size**2
            base = base or per_pixel
            print(f"{model:<13}{size:>6}{r['params']:>10,}{r['sec'] * 1e3:>11.0f}{per_pixel * 1e9:>10.0f}"
                  f"{per_pixel / base:>15.2f}{r['compile']:>11.1f}{r['peak'] / 2**20:>10.0f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[4096, 65536])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--methods", nargs="+", default=None, help="subset of: sequential associative chunked chunked+remat pallas")
    p.add_argument("--training-shapes", action="store_true", help="FusionMamba / LE-Mamba training scans (batch 32, L 4096)")
    p.add_argument("--bandwidth-gbs", type=float, default=4300.0, help="device memory bandwidth for the roofline (GB/s)")
    p.add_argument("--pallas-interpret", action="store_true", help="time 'pallas' on the CPU too (interpret mode: not a speed measure)")
    p.add_argument("--models", nargs="+", default=None, help="time train steps of these registry models instead")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512], help="PAN sizes for --models")
    p.add_argument("--scan-method", default="sequential", help="scan method of the models (--models)")
    p.add_argument("--le-size", default="small", help="LE-Mamba preset (--models)")
    p.add_argument("--directions", default="auto", help="scan_directions of the models: auto | batched | serial (--models)")
    p.add_argument("--remat-blocks", action="store_true", help="recompute each block in the backward pass (--models)")
    # child-only options
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--remat", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, help=argparse.SUPPRESS)
    p.add_argument("--model-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()  # before the first JAX computation (see pansharp_jax.runtime)
    if args.child:
        _child(args)
        return
    if args.model_child:
        _model_child(args)
        return
    if args.models:
        _models_table(args)
        return

    _scan_table(args)


def _scan_table(args: argparse.Namespace) -> None:
    import jax

    from pansharp_jax.nn.selective_scan_pallas import roofline_bytes

    backend = jax.default_backend()
    print(f"device: {jax.devices()[0]} ({backend}); roofline at {args.bandwidth_gbs:.0f} GB/s")
    print(f"chunk {args.chunk}, float32, D term + silu(z) gate + softplus step, median of {args.runs} runs after compile")
    skip_pallas = backend == "cpu" and not args.pallas_interpret
    if skip_pallas:
        print("pallas: skipped on the CPU (interpret mode is not a speed measure; --pallas-interpret times it anyway)")
    if args.training_shapes:
        shapes = TRAINING_SHAPES
    else:
        shapes = [(f"L{L}", args.batch, L, args.d, args.n) for L in args.lengths]
    header = (f"{'shape':<13}{'method':<15}{'b':>4}{'L':>7}{'D':>5}{'N':>4}  {'pass':<8}{'ms':>10}{'Mtok/s':>10}"
              f"{'roof us':>10}{'x roof':>9}{'peak MiB':>10}")
    print(header, flush=True)
    device, how, times = None, None, {}
    for label, b, L, d, n in shapes:
        for method, remat in CASES:
            name = method + ("+remat" if remat else "")
            if (args.methods and name not in args.methods) or (method == "pallas" and skip_pallas):
                continue
            for backward in (False, True):
                cmd = [sys.executable, __file__, "--child", "--method", method, "--length", str(L), "--runs", str(args.runs),
                       "--chunk", str(args.chunk), "--d", str(d), "--n", str(n), "--batch", str(b)]
                cmd += ["--remat"] * remat + ["--backward"] * backward
                res = subprocess.run(cmd, capture_output=True, text=True)
                pas = "fwd+bwd" if backward else "fwd"
                head = f"{label:<13}{name:<15}{b:>4}{L:>7}{d:>5}{n:>4}  {pas:<8}"
                if res.returncode != 0:
                    err = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode
                    print(f"{head}  failed: {err}", flush=True)
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                device, how = r["device"], r["how"]
                times[(label, name, pas)] = r["sec"]
                roof = roofline_bytes(b, L, d, n, 4, backward=backward) / (args.bandwidth_gbs * 1e9)
                print(f"{head}{r['sec'] * 1e3:>10.2f}{r['tok_s'] / 1e6:>10.3f}{roof * 1e6:>10.2f}{r['sec'] / roof:>9.1f}"
                      f"{r['peak'] / 2**20:>10.0f}", flush=True)
    for label, *_ in shapes:
        a, p = times.get((label, "associative", "fwd+bwd")), times.get((label, "pallas", "fwd+bwd"))
        if a and p:
            note = " (CPU interpret mode: not a speed measure)" if backend == "cpu" else ""
            print(f"{label}: pallas fwd+bwd is {a / p:.1f}x the associative throughput{note}")
    print(f"device: {device}; peak memory: {how}")


if __name__ == "__main__":
    main()

"""CANNet / CANConv speed and memory.

Prints (wall-clock medians after one warm-up call; compile time separately):

* the CANConv operator (CANNet's rb1 layer: 32 -> 32 channels, K = 32, filter 0.005, low-rank
  generator) at 64 x 64, batch 32: forward and forward+backward for every partition-wise
  method (``factorized``, ``bucket``, ``onehot``) with the partition held fixed, so that only
  the convolution differs;
* CANNet (8 bands, published sizes, random weights): forward and one Adam train step at
  64 x 64 batch 32, forward at 256 x 256 and 1024 x 1024 (batch 1);
* the peak resident memory of the process (``ru_maxrss``) after each stage, and the device's
  peak bytes where the backend reports them (GPUs).

Usage: ``python benchmarks/canconv_speed.py [--repeats 3] [--skip-1024] [--batch 32]``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _rss_gib() -> float:
    """Peak resident set size of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _device_peak() -> str:
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:
        stats = {}
    peak = stats.get("peak_bytes_in_use")
    return f"{peak / 2**30:.2f} GiB" if peak else "n/a"


def _time(fn: Callable[..., Any], *args: Any, repeats: int) -> tuple[float, float]:
    """(compile + first call seconds, median seconds of ``repeats`` further calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def _report(label: str, first: float, median: float) -> None:
    print(f"{label:48s} first {first:8.2f} s   median {median * 1e3:10.1f} ms   peak RSS {_rss_gib():6.2f} GiB   device peak {_device_peak()}")
    sys.stdout.flush()


def bench_operator(batch: int, size: int, repeats: int) -> None:
    """The three partition-wise methods on CANNet's rb1 layer with a fixed partition."""
    from pansharp_jax.nn.canconv import CANConv, filter_small_clusters
    from pansharp_jax.nn.kmeans import kmeans

    x = jax.random.normal(jax.random.key(0), (batch, size, size, 32))
    feats = jax.random.normal(jax.random.key(1), (batch, size * size, 32))
    raw, _ = jax.jit(lambda f: kmeans(f, 32))(feats)
    part = filter_small_clusters(raw, 32, 0.005)
    params = None
    for method in ("factorized", "bucket", "onehot"):
        layer = CANConv(32, cluster_num=32, filter_threshold=0.005, method=method)
        if params is None:
            params = jax.jit(layer.init)(jax.random.key(2), x, part)["params"]
        # the partition is an argument, not a closure constant (XLA would sort it at compile time)
        fwd = jax.jit(lambda p, a, q, layer=layer: layer.apply({"params": p}, a, q)[0])
        grad = jax.jit(jax.grad(lambda p, a, q, layer=layer: jnp.sum(layer.apply({"params": p}, a, q)[0] ** 2)))
        _report(f"CANConv {method:10s} fwd      {batch}x{size}x{size}x32", *_time(fwd, params, x, part, repeats=repeats))
        _report(f"CANConv {method:10s} fwd+bwd  {batch}x{size}x{size}x32", *_time(grad, params, x, part, repeats=repeats))
    f = jax.jit(lambda a: kmeans(a, 32)[0])
    _report(f"k-means (K=32, 20 it.)       {batch}x{size * size}x32", *_time(f, feats, repeats=repeats))


def _host_params(module: Any, *args: Any) -> Any:
    """PyTorch-like random params drawn on the host (``module.init`` is slow to compile on CPU)."""
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)["params"]

    def draw(path: Any, leaf: Any) -> jax.Array:
        name, shape = str(path[-1].key), leaf.shape
        if name == "kernels":
            v = rng.normal(size=shape) * np.sqrt(2.0 / (shape[1] * shape[2]))
        elif name == "kernel":
            v = rng.uniform(-1, 1, shape) / np.sqrt(np.prod(shape[:-1]))
        else:
            v = rng.uniform(-0.1, 0.1, shape)
        return jnp.asarray(v, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _inputs(n: int, size: int, bands: int = 8) -> tuple[jax.Array, jax.Array, jax.Array]:
    k = jax.random.split(jax.random.key(3), 3)
    return (
        jax.random.uniform(k[0], (n, size // 4, size // 4, bands)),
        jax.random.uniform(k[1], (n, size, size, 1)),
        jax.random.uniform(k[2], (n, size, size, bands)),
    )


def bench_cannet(batch: int, repeats: int, skip_1024: bool) -> None:
    """CANNet forward / train step / large forwards."""
    from pansharp_jax.models import registry

    module = registry.build_model(registry.default_config("cannet"))
    lrms, pan, lms = _inputs(batch, 64)
    params = _host_params(module, lrms, pan, lms)
    fwd = jax.jit(lambda p, a, b, c: module.apply({"params": p}, a, b, c))
    _report(f"CANNet forward   {batch}x64x64", *_time(fwd, params, lrms, pan, lms, repeats=repeats))
    gt = jnp.clip(lms + 0.1 * (pan - 0.5), 0, 1)
    tx = optax.adam(1e-3)
    opt = tx.init(params)

    @jax.jit
    def step(p: Any, o: Any) -> tuple[Any, Any, jax.Array]:
        loss, g = jax.value_and_grad(lambda q: jnp.mean(jnp.abs(module.apply({"params": q}, lrms, pan, lms, train=True) - gt)))(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    _report(f"CANNet train step {batch}x64x64 (Adam, L1)", *_time(step, params, opt, repeats=repeats))
    sizes = (256,) if skip_1024 else (256, 1024)
    for size in sizes:
        a, b, c = _inputs(1, size)
        _report(f"CANNet forward   1x{size}x{size}", *_time(fwd, params, a, b, c, repeats=max(1, repeats if size < 1024 else 1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--skip-1024", action="store_true")
    ap.add_argument("--skip-operator", action="store_true")
    args = ap.parse_args()
    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()  # before the first JAX computation (see pansharp_jax.runtime)
    print(f"devices: {jax.devices()}")
    if not args.skip_operator:
        bench_operator(args.batch, 64, args.repeats)
    bench_cannet(args.batch, args.repeats, args.skip_1024)


if __name__ == "__main__":
    main()

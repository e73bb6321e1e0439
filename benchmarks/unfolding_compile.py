"""Compile time and step time of the deep-unfolding network: stages as one nn.scan vs a Python loop.

Usage::

    python benchmarks/unfolding_compile.py            # K = 2, 4, 8, 16
    python benchmarks/unfolding_compile.py --quick    # K = 2, 4
    python benchmarks/unfolding_compile.py --stages 2 32 --runs 10

For each number of stages K, :class:`~pansharp_jax.models.unfolding.Unfolding` with tiny sizes
(64 x 64 PAN, 8 bands, WV2 MTF, proximal CNN 16 features, the MAE prior on: patch 8, width 32,
depth 1; no consistency term) and one training step (L1 loss, ``jax.value_and_grad``, SGD
update; batch ``--batch``) is built two ways on the SAME parameters:

* scan: ``Unfolding.apply`` with ``scan_unroll=1`` (the K stages are one rolled ``nn.scan``);
* scan, unrolled: ``scan_unroll=K`` (the same ``nn.scan`` and params, the compiled loop
  unrolled: the model's CPU default, see ``pansharp_jax.nn.unroll.resolve_unroll``);
* loop: a Python loop applying :class:`~pansharp_jax.models.unfolding.Stage` K times, stage k
  with its slice ``params['stages'][k]`` of the stacked parameters (the unrolled graph).

Columns: lowering + XLA compile time of the jitted step (wall seconds, and the process CPU
seconds, steadier on a shared machine), the median step time over ``--runs`` calls after one
warm-up, and the largest difference between the two forward outputs (they must agree).
Numbers depend on the machine; compile time grows with K for the loop and stays flat for the scan.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.data import wald
from pansharp_jax.models.unfolding import Stage, build_unfolding, unfolding_config

TINY_MAE = dict(patch=8, embed_dim=32, depth=1, heads=2, decoder_dim=16, decoder_depth=1, decoder_heads=2)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build(stages: int, scan_unroll: int = 1) -> Any:
    """The tiny unfolding network with ``stages`` stages (``scan_unroll``: see ``nn.unroll.resolve_unroll``)."""
    cfg = unfolding_config(8, "WV2")
    cfg.mae.update(TINY_MAE)
    cfg.update(stages=stages, features=16, consistency_weight=0.0, scan_unroll=scan_unroll)
    model = build_unfolding(cfg)
    return model


def inputs(batch: int, size: int = 64, bands: int = 8) -> dict[str, jax.Array]:
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    lrms = jax.random.uniform(k[0], (batch, size // 4, size // 4, bands))
    pan = jax.random.uniform(k[1], (batch, size, size, 1))
    lms = jnp.asarray(wald.interp23tap(lrms, 4), jnp.float32)
    gt = jax.random.uniform(k[2], (batch, size, size, bands))
    return {"lrms": lrms, "pan": pan, "lms": lms, "gt": gt}


def loop_forward(model: Any, params: Any, lrms: jax.Array, pan: jax.Array, lms: jax.Array) -> jax.Array:
    """The unrolled network: :class:`Stage` applied ``model.stages`` times with per-stage params."""
    shared = {"kernel": params["blur"], "kernel_t": params["blur_t"], "response": params["response"],
              "response_t": params["response_t"], "lrms": lrms, "pan": pan, "prior": params["prior"]}  # fmt: skip
    stage = Stage(model.bands, model.ratio, model.features, True, model.mae_fields)
    x = lms
    for k in range(model.stages):
        x, _ = stage.apply({"params": jax.tree.map(lambda a, k=k: a[k], params["stages"])}, x, shared)
    return x


def make_step(forward: Any) -> Any:
    """A jitted training step ``(params, batch) -> (params', loss)`` (L1, SGD lr 1e-3)."""

    def step(params: Any, batch: dict[str, jax.Array]) -> tuple[Any, jax.Array]:
        def loss(p: Any) -> jax.Array:
            return jnp.mean(jnp.abs(forward(p, batch["lrms"], batch["pan"], batch["lms"]) - batch["gt"]))

        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), value

    return jax.jit(step)


def time_case(forward: Any, params: Any, batch: dict[str, jax.Array], runs: int) -> dict[str, float]:
    """Compile (wall, CPU) seconds and the median step time of ``forward``'s training step."""
    step = make_step(forward)
    t0, c0 = time.perf_counter(), _cpu()
    compiled = step.lower(params, batch).compile()
    out = {"compile_s": time.perf_counter() - t0, "compile_cpu_s": _cpu() - c0}
    jax.block_until_ready(compiled(params, batch))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, batch))
        times.append(time.perf_counter() - t0)
    out["step_ms"] = 1000 * statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument("--quick", action="store_true", help="K = 2, 4 only")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batch", type=int, default=2)
    args = p.parse_args(argv)
    ks = [2, 4] if args.quick else args.stages
    batch = inputs(args.batch)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; batch {args.batch}, PAN 64x64, 8 bands, MAE prior on")
    rows = []
    for k in ks:
        model, unrolled = build(k), build(k, scan_unroll=k)
        params = jax.jit(lambda m=model: m.init(jax.random.PRNGKey(1), batch["lrms"], batch["pan"], batch["lms"]))()["params"]
        scan_fwd = lambda p, a, b, c, m=model: m.apply({"params": p}, a, b, c)  # noqa: E731
        unrolled_fwd = lambda p, a, b, c, m=unrolled: m.apply({"params": p}, a, b, c)  # noqa: E731
        loop_fwd = lambda p, a, b, c, m=model: loop_forward(m, p, a, b, c)  # noqa: E731
        diff = float(jnp.max(jnp.abs(jax.jit(scan_fwd)(params, batch["lrms"], batch["pan"], batch["lms"])
                                     - jax.jit(loop_fwd)(params, batch["lrms"], batch["pan"], batch["lms"]))))  # fmt: skip
        scan = time_case(scan_fwd, params, batch, args.runs)
        unr = time_case(unrolled_fwd, params, batch, args.runs)
        loop = time_case(loop_fwd, params, batch, args.runs)
        rows.append((k, scan, unr, loop, diff))
        print(f"K={k}: scan compile {scan['compile_s']:.2f} s, unrolled {unr['compile_s']:.2f} s, "
              f"loop {loop['compile_s']:.2f} s", flush=True)
    print("\n| K | scan compile s (CPU s) | scan step ms | unrolled scan compile s (CPU s) | unrolled step ms "
          "| loop compile s (CPU s) | loop step ms | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, s, u, lp, d in rows:
        print(f"| {k} | {s['compile_s']:.2f} ({s['compile_cpu_s']:.2f}) | {s['step_ms']:.1f} | "
              f"{u['compile_s']:.2f} ({u['compile_cpu_s']:.2f}) | {u['step_ms']:.1f} | "
              f"{lp['compile_s']:.2f} ({lp['compile_cpu_s']:.2f}) | {lp['step_ms']:.1f} | {d:.1e} |")  # fmt: skip
    ok = all(np.isfinite(d) and d < 1e-4 for *_, d in rows)
    print("scan and loop outputs agree:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

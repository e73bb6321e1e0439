"""MHIF speed: seconds per scene (LR-HSI + RGB guide -> HR-HSI) for INFN, FeINFN and the classical baselines.

Usage::

    python benchmarks/mhif_speed.py [--size 512] [--bands 31] [--ratio 4] [--runs 2]
        [--methods infn,feinfn,bicubic,glp_hs,cnmf] [--width published|tiny] [--quick]

One ``--size`` x ``--size`` x ``--bands`` scene (the CAVE ``balloons`` cube tiled when
``$PANSHARP_DATA`` is set, else smooth random data; the timing does not depend on the values)
is simulated at ``--ratio`` (``zsl`` degradation, Nikon SRF or a random 3-band SRF) and fused
through the method API (:func:`pansharp_jax.methods.resolve` for the classical methods,
:func:`pansharp_jax.methods.mhif.mhif_from_params` for the networks with randomly initialised
parameters of the ``--width``: ``published`` = the registry defaults, 128 features, or
``tiny``). Each method: the first call (compile + run) and the median of ``--runs`` further
calls, plus the parameter count. ``--quick``: one timed run, without CNMF.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
from _timing import first_and_median

TINY = {"feats": 16, "blocks": 1, "hidden": (32,), "spatial_hidden": (32,), "amp_hidden": (32,), "phase_hidden": (32,)}




def make_scene(size: int, bands: int, ratio: int) -> Any:
    """A simulated MHIF scene (task ``mhif``), float64 on [0, 1]."""
    from pansharp_jax.data import hsi

    if os.environ.get("PANSHARP_DATA") and bands == 31:
        cube = hsi.read_hsi("hs/cave_balloons_256.mat")
        reps = -(-size // cube.shape[0])
        cube = np.tile(cube, (reps, reps, 1))[:size, :size]
        srf = hsi.load_srf()
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.meshgrid(np.linspace(0, 6, size), np.linspace(0, 6, size), indexing="ij")
        cube = 0.5 + 0.4 * np.sin(xx[..., None] * rng.uniform(0.5, 2, bands) + yy[..., None])
        srf = rng.uniform(0, 1, (bands, 3))
    return hsi.simulate_mhif(cube, srf, ratio=ratio, name=f"mhif_{size}")


def method_for(name: str, scene: Any, width: str) -> tuple[Any, int]:
    """(Method, parameter count) for ``name``."""
    import jax

    from pansharp_jax.methods import resolve
    from pansharp_jax.methods.mhif import MODELS, mhif_from_params
    from pansharp_jax.models import registry

    if name not in MODELS:
        return resolve(name), 0
    cfg = registry.default_config(name)
    cfg.bands, cfg.guide_bands = scene.nbands, scene.pan.shape[-1]
    if width == "tiny":
        for k, v in TINY.items():
            if k in cfg:
                cfg[k] = v
    module = registry.build_model(cfg)
    lr = np.zeros((1, 8, 8, cfg.bands), np.float32)
    pan = np.zeros((1, 8 * scene.ratio, 8 * scene.ratio, cfg.guide_bands), np.float32)
    lms = np.zeros((1, 8 * scene.ratio, 8 * scene.ratio, cfg.bands), np.float32)
    params = jax.jit(module.init)(jax.random.PRNGKey(0), lr, pan, lms)["params"]
    count = int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
    return mhif_from_params(name, params, cfg), count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--bands", type=int, default=31)
    ap.add_argument("--ratio", type=int, default=4)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--methods", default="infn,feinfn,bicubic,glp_hs,cnmf")
    ap.add_argument("--width", default="published", choices=("published", "tiny"))
    ap.add_argument("--quick", action="store_true", help="one timed run, no CNMF")
    args = ap.parse_args(argv)

    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()
    import jax

    runs = 1 if args.quick else args.runs
    names = [m.strip() for m in args.methods.split(",") if m.strip() and not (args.quick and m.strip() == "cnmf")]
    scene = make_scene(args.size, args.bands, args.ratio)
    print(f"MHIF speed on {jax.default_backend()} ({jax.device_count()} device(s), {os.cpu_count()} CPUs): "
          f"{args.size}x{args.size}x{args.bands} HR-HSI, ratio {args.ratio}, RGB guide, width {args.width}")  # fmt: skip
    print("| method | parameters | first call (s) | per scene (s) | MPix/s |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        method, count = method_for(name, scene, args.width)
        first, per = first_and_median(lambda: method.fuse(scene), runs)
        mpix = args.size * args.size / 1e6 / per
        print(f"| {method.label} | {count:,} | {first:.2f} | {per:.2f} | {mpix:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

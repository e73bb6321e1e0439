"""Tiled against whole-scene products, and products on a nodata frame, per method.

For each method (classical names, or ``NAME=WEIGHTS`` for released weights): fuse a GeoTIFF
pair whole and with ``--tile`` windows through the product engine, print the largest
absolute difference on the [0, 1] scale, and for methods with a global receptive field
save the difference map (``<out>/<method>_tiled_minus_whole.png``, bands averaged, scaled
to its 99.9th percentile) where seams would show as a grid. With ``--frame PREFIX`` it
also fuses a scene with a nodata frame (``make_large_scene.py --border``) and checks that
every product is finite and within [0, 1].

::

    python benchmarks/make_large_scene.py --size 1280 --out runs/scenes
    python benchmarks/make_large_scene.py --size 1280 --border 64 --out runs/scenes
    python benchmarks/tiled_vs_whole.py --scene runs/scenes/wv2_1280 --frame runs/scenes/wv2_1280_b64 \\
        --methods all fusionnet=fusionnet/WV2/fusionnet.pth fusionmamba=fusionmamba/420.pth --tile 256 --out runs/tiling
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _methods(specs: list[str]) -> list[tuple[str, str | None]]:
    from pansharp_jax import classical

    out: list[tuple[str, str | None]] = []
    for spec in specs:
        if spec == "all":
            out += [(name, None) for name in classical.METHODS]
        else:
            name, _, weights = spec.partition("=")
            out.append((name, weights or None))
    return out


def _difference_png(path: Path, diff: np.ndarray, tile: int) -> None:
    from PIL import Image

    d = np.abs(diff).mean(-1)
    scale = float(np.percentile(d, 99.9)) or 1.0
    img = (np.clip(d / scale, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(img).save(path)
    print(f"  difference map {path} (white = {scale:.2e}; tile cores every {tile} px)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scene", required=True, help="PREFIX of PREFIX_ms.tif / PREFIX_pan.tif")
    p.add_argument("--frame", help="PREFIX of a scene with a nodata frame (validity check)")
    p.add_argument("--methods", nargs="+", default=["all"], help="'all' (classical), names, NAME=WEIGHTS")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--out", default="runs/tiling")
    args = p.parse_args(argv)
    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()
    from pansharp_jax.methods import GLOBAL, resolve
    from pansharp_jax.products import engine
    from pansharp_jax.products.geotiff import GeoTiffPair

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, weights in _methods(args.methods):
        method = resolve(name, weights=weights)
        row: dict[str, object] = {"method": method.label, "receptive": method.receptive}
        with GeoTiffPair.open(f"{args.scene}_ms.tif", f"{args.scene}_pan.tif") as src:
            t0 = time.perf_counter()
            whole = engine.fuse_source(method, src)
            row["whole_s"] = round(time.perf_counter() - t0, 1)
            sink = engine.ArraySink(src.height, src.width, src.nbands)
            rep = engine.fuse_tiled(method, src, sink, tile=args.tile, batch=args.batch, progress=False)
            row["tiled_s"] = round(rep.seconds, 1)
            diff = sink.array - whole
            row.update(margin=rep.margin, feather=rep.feather, max_abs_diff=float(np.abs(diff).max()),
                       mean_abs_diff=float(np.abs(diff).mean()))  # fmt: skip
            if method.receptive == GLOBAL:
                _difference_png(out / f"{method.name}_tiled_minus_whole.png", diff, args.tile)
        if args.frame:
            with GeoTiffPair.open(f"{args.frame}_ms.tif", f"{args.frame}_pan.tif") as src:
                sink = engine.ArraySink(src.height, src.width, src.nbands)
                engine.fuse_tiled(method, src, sink, tile=args.tile, batch=args.batch, progress=False)
                f = sink.array
                row["frame_finite"] = bool(np.isfinite(f).all())
                row["frame_range"] = [float(f.min()), float(f.max())]
                whole_f = engine.fuse_source(method, src)
                row["frame_whole_finite_in_range"] = bool(np.isfinite(whole_f).all() and whole_f.min() >= 0 and whole_f.max() <= 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"| method | receptive | margin px | feather px | max abs diff | mean abs diff | whole s | tiled s (tile {args.tile}) |" + (" nodata frame: finite, range |" if args.frame else ""))
    print("|---|---|---:|---:|---:|---:|---:|---:|" + ("---|" if args.frame else ""))
    for r in rows:
        frame = f" {r['frame_finite']}, [{r['frame_range'][0]:.3g}, {r['frame_range'][1]:.3g}] |" if args.frame else ""
        print(f"| {r['method']} | {r['receptive']} | {r['margin']} | {r['feather']} | {r['max_abs_diff']:.2e} | {r['mean_abs_diff']:.2e} | {r['whole_s']} | {r['tiled_s']} |{frame}")
    (out / "tiled_vs_whole.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    main()

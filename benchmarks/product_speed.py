"""Whole-scene products: MPix/s and peak RSS of ``pansharp fuse`` per method and scene.

Each run is a fresh ``pansharp fuse`` process (import, compile, read, fuse, write the COG:
what a user waits for); its peak RSS is the child's ``ru_maxrss``. Scenes are GeoTIFF pairs
made by ``benchmarks/make_large_scene.py``::

    python benchmarks/make_large_scene.py --size 1280 --out runs/scenes
    python benchmarks/make_large_scene.py --size 8192 --out runs/scenes
    python benchmarks/product_speed.py --scenes runs/scenes/wv2_1280 runs/scenes/wv2_8192 \\
        --methods gsa mtf_glp_fs fusionnet=fusionnet/WV2/fusionnet.pth --tile 1024 --max-memory 2

prints one row per (method, scene): seconds, MPix/s, peak RSS (GiB), and the time per
megapixel relative to the first scene (the cost-linear-in-pixels check). ``NAME=WEIGHTS``
gives a learned method its released weights (relative paths also under
``$PANSHARP_WEIGHTS``). ``--tile`` applies to scenes larger than ``--whole-below`` PAN pixels
a side (smaller ones are fused whole, as the CLI does by default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(method: str, weights: str | None, scene: str, out: Path, extra: list[str]) -> dict[str, float | str]:
    """Fuse ``scene`` (``PREFIX`` of ``PREFIX_ms.tif`` / ``PREFIX_pan.tif``) in a child process."""
    exe = Path(sys.executable).parent / "pansharp"
    cmd = [str(exe), "fuse", "-m", method, "-i", f"{scene}_ms.tif", "--pan", f"{scene}_pan.tif", "-o", str(out), "--no-progress", *extra]
    if weights:
        cmd += ["--weights", weights]
    # a fresh interpreter per run: ru_maxrss of RUSAGE_CHILDREN is the largest child so far,
    # so each run goes through its own wrapper process that reports its child's peak
    wrapper = (
        "import resource, subprocess, sys, json; rc = subprocess.call(sys.argv[1:]); "
        "print(json.dumps({'rc': rc, 'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
    )
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    info = json.loads(res.stdout.strip().splitlines()[-1])
    if info["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return {"seconds": seconds, "rss_gib": info["rss"] * 1024 / 2**30, "log": res.stdout.strip().splitlines()[0]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", required=True, help="scene prefixes (PREFIX_ms.tif + PREFIX_pan.tif); the first is the reference")
    p.add_argument("--methods", nargs="+", default=["gsa", "mtf_glp_fs"], help="method names, NAME=WEIGHTS for learned ones")
    p.add_argument("--tile", type=int, default=1024, help="tile for scenes above --whole-below (default 1024)")
    p.add_argument("--whole-below", type=int, default=2048, help="scenes with a side up to this are fused whole")
    p.add_argument("--max-memory", type=float, help="passed to pansharp fuse for tiled scenes (GiB)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", help="also write the rows as JSON")
    args = p.parse_args(argv)
    import rasterio

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.methods:
            name, _, weights = spec.partition("=")
            ref_per_mpix = None
            for scene in args.scenes:
                with rasterio.open(f"{scene}_pan.tif") as src:
                    h, w = src.height, src.width
                extra: list[str] = []
                if max(h, w) > args.whole_below:
                    extra += ["--tile", str(args.tile), "--batch", str(args.batch)]
                    if args.max_memory:
                        extra += ["--max-memory", str(args.max_memory)]
                out = Path(tmp) / f"{name}_{Path(scene).name}.tif"
                r = run_one(name, weights or None, scene, out, extra)
                out.unlink(missing_ok=True)
                mpix = h * w / 1e6
                per = r["seconds"] / mpix
                ref_per_mpix = ref_per_mpix or per
                row = {"method": name, "scene": Path(scene).name, "pixels": f"{h}x{w}", "mode": "tiled" if extra else "whole",
                       "seconds": round(r["seconds"], 1), "mpix_per_s": round(mpix / r["seconds"], 3),
                       "peak_rss_gib": round(r["rss_gib"], 2), "time_per_mpix_vs_first": round(per / ref_per_mpix, 2)}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print("| method | scene | mode | s | MPix/s | peak RSS GiB | s/MPix vs first |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['scene']} ({r['pixels']}) | {r['mode']} | {r['seconds']} | {r['mpix_per_s']} | {r['peak_rss_gib']} | {r['time_per_mpix_vs_first']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    main()

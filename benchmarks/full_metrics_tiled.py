"""Whole-scene vs tiled full-resolution indices: seconds, peak memory and agreement.

Usage::

    PANSHARP_DATA=../shared/data python benchmarks/full_metrics_tiled.py [--tile 512] [--repeat 1]

Fuses ``fr/wv2_pnn.mat`` with MTF-GLP (float64, clipped), writes the fused image and
the PAN as ``.npy`` files to a temporary folder, then runs each evaluation in its own
process (so that each peak RSS is its own):

* ``whole``: loads both arrays and calls :func:`pansharp_jax.metrics.evaluate_full`;
* ``tiled``: calls :func:`pansharp_jax.metrics.evaluate_full_tiled` with readers that
  map the ``.npy`` files, copy one window and unmap (only windows are resident).

``--repeat N`` mosaics the scene N x N times (PAN, fused and LRMS alike) to show how the
two scale. Printed per mode: the first call (compilation included) and a second call
in seconds, the peak RSS of the process and its RSS before the call, then the largest
absolute difference of each index between the two modes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _child(mode: str, folder: Path, tile: int) -> None:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import numpy as np

    from pansharp_jax import metrics

    meta = json.loads((folder / "meta.json").read_text())
    lrms = np.load(folder / "lrms.npy")
    kw = dict(sensor=meta["sensor"], ratio=meta["ratio"], max_dn=meta["max_dn"])

    if mode == "whole":
        def run() -> dict:
            fused, pan = np.load(folder / "fused.npy"), np.load(folder / "pan.npy")
            return metrics.evaluate_full(fused, lrms, pan, **kw)
    else:
        def reader(name: str):
            def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
                mm = np.load(folder / name, mmap_mode="r")
                out = np.array(mm[r0:r1, c0:c1])
                del mm
                return out
            return read

        def run() -> dict:
            h, w = meta["height"], meta["width"]
            rf, rp = reader("fused.npy"), reader("pan.npy")
            return metrics.evaluate_full_tiled(rf, rp, lrms, height=h, width=w, tile=tile, **kw)

    rss0 = _rss_mib()
    t0 = time.perf_counter()
    values = run()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    values = run()
    second = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"values": values, "first_s": first, "second_s": second, "peak_mib": peak, "rss0_mib": rss0}))


def _prepare(folder: Path, repeat: int) -> dict:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import numpy as np

    from pansharp_jax.data.io import load_scene
    from pansharp_jax.methods import resolve

    data = os.environ.get("PANSHARP_DATA")
    if not data:
        sys.exit("set PANSHARP_DATA to the shared data folder (needs fr/wv2_pnn.mat)")
    scene = load_scene(Path(data) / "fr" / "wv2_pnn.mat")
    fused = resolve("mtf_glp").fuse(scene)  # float64, clipped to [0, 1]
    tiles = (repeat, repeat, 1)
    pan = np.tile(np.asarray(scene.pan, dtype=np.float64), tiles)
    np.save(folder / "fused.npy", np.tile(fused, tiles))
    np.save(folder / "pan.npy", pan)
    np.save(folder / "lrms.npy", np.tile(np.asarray(scene.lrms, dtype=np.float64), tiles))
    meta = {
        "sensor": scene.sensor.name, "ratio": int(scene.ratio), "max_dn": 2.0**scene.bits - 1.0,
        "height": int(pan.shape[0]), "width": int(pan.shape[1]), "bands": int(fused.shape[2]),
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=1, help="mosaic the scene N x N times")
    ap.add_argument("--child", choices=["whole", "tiled"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.folder, args.tile)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        meta = _prepare(folder, args.repeat)
        print(f"wv2_pnn x{args.repeat}: {meta['height']}x{meta['width']}x{meta['bands']}, tile {args.tile}")
        results = {}
        for mode in ("whole", "tiled"):
            cmd = [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--tile", str(args.tile)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[mode] = r = json.loads(out.strip().splitlines()[-1])
            print(
                f"  {mode:<6s} first {r['first_s']:7.2f} s   second {r['second_s']:7.2f} s   "
                f"peak RSS {r['peak_mib']:8.0f} MiB (before the call {r['rss0_mib']:6.0f} MiB)"
            )
        print("  max |tiled - whole|:")
        for key, value in results["whole"]["values"].items():
            diff = abs(results["tiled"]["values"][key] - value)
            print(f"    {key:<11s} {value:.15f}   {diff:.3e}")


if __name__ == "__main__":
    main()

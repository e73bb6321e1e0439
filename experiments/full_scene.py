"""Run a method on a whole full-resolution scene in one piece: time, peak memory, RGB picture.

For the "any size, no tiles" claim of the fully convolutional / state-space networks: the
scene goes through the network in one call (no tiling, hence no seams), and the script writes

* ``<out>/<method>_rgb.png``: the fused image (RGB bands of the scene, or 4-2-1 / 2-1-0),
  stretched with the 1-99 % percentiles of the upsampled MS (so methods compare);
* ``<out>/<method>_seams.png``: the absolute horizontal + vertical gradient of the band mean,
  where tile seams would show as straight lines on a regular grid;
* ``<out>/<method>_run.json``: seconds (compile included and excluded), peak RSS, shape,
  the full-resolution quality indices (D_lambda, D_S, QNR of :mod:`pansharp_jax.metrics`).

Usage (``$PANSHARP_DATA`` holds the shared scenes)::

    python experiments/full_scene.py --method fusionmamba --weights $PANSHARP_WEIGHTS/fusionmamba/420.pth \\
        --input $PANSHARP_DATA/fr/wv2_pnn.mat --out runs/full_scene
    python experiments/full_scene.py --method le_mamba --ckpt runs/le_mamba_wv2_real \\
        --input $PANSHARP_DATA/fr/wv2_pnn.mat --out runs/full_scene

Any method ``pansharp fuse`` knows works (classical ones too). The run is timed twice: the
first call includes XLA compilation, the second does not.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def _rgb_bands(scene) -> tuple[int, int, int]:
    c = scene.lrms.shape[-1]
    return (4, 2, 1) if c >= 8 else (2, 1, 0) if c >= 3 else (0, 0, 0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", required=True)
    p.add_argument("--weights", help="released PyTorch weights of a learned method")
    p.add_argument("--ckpt", help="training workdir of a learned method")
    p.add_argument("--input", required=True, help="full-resolution scene (.mat, .h5, .npz, GeoTIFF)")
    p.add_argument("--out", default="runs/full_scene")
    p.add_argument("--no-metrics", action="store_true", help="skip D_lambda / D_S / QNR")
    args = p.parse_args(argv)
    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()  # before the first JAX computation (see pansharp_jax.runtime)

    from PIL import Image

    from pansharp_jax.data import wald
    from pansharp_jax.data.io import load_scene
    from pansharp_jax.methods import resolve
    from pansharp_jax.report.grid import apply_stretch, shared_stretch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = load_scene(args.input)
    method = resolve(args.method, weights=args.weights, ckpt=args.ckpt)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    fused = method.fuse(scene)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fused = method.fuse(scene)
    second = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 2**30
    if not np.isfinite(fused).all():
        raise SystemExit(f"{args.method}: non-finite values in the fused image")

    name = args.method.lower().replace("-", "_")
    rgb = _rgb_bands(scene)
    lms = np.asarray(wald.interp23tap(scene.lrms, scene.ratio))
    lo, hi = shared_stretch(lms, rgb)
    Image.fromarray((apply_stretch(fused, rgb, lo, hi) * 255).round().astype(np.uint8)).save(out / f"{name}_rgb.png")
    mean = fused.mean(-1)
    grad = np.zeros_like(mean)
    grad[:, 1:] += np.abs(np.diff(mean, axis=1))
    grad[1:, :] += np.abs(np.diff(mean, axis=0))
    Image.fromarray((np.clip(grad / np.percentile(grad, 99.5), 0, 1) * 255).astype(np.uint8)).save(out / f"{name}_seams.png")

    record = {
        "method": method.label,
        "scene": Path(args.input).name,
        "fused_shape": list(fused.shape),
        "seconds_with_compile": round(first, 2),
        "seconds": round(second, 2),
        "peak_rss_gib": round(peak_gib, 2),
        "peak_rss_gib_at_start": round(rss0 * (1 if sys.platform == "darwin" else 1024) / 2**30, 2),
    }
    if not args.no_metrics:
        from pansharp_jax.metrics import evaluate_full

        scores = evaluate_full(fused, scene.lrms, scene.pan, sensor=scene.sensor, ratio=scene.ratio, max_dn=2.0**scene.bits - 1)
        record["metrics"] = {k: round(float(v), 4) for k, v in scores.items()}
    (out / f"{name}_run.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

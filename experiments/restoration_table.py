"""QWSNM vs QWNNM vs per-channel WNNM / WSNM: colour denoising and deblurring table.

Usage::

    python experiments/restoration_table.py --out runs/restoration [--size 128] [--images astronaut,coffee,chelsea,wv3]
        [--sigmas 15,25,50] [--kernels gaussian,motion] [--deblur-sigma 5] [--iters 6] [--deblur-iters 12]
        [--window 10] [--step 4] [--methods qwsnm,qwnnm,wnnm,wsnm]

Images (redistributable): scikit-image's bundled ``astronaut``, ``coffee``, ``chelsea``
(centre square crop, resized to ``--size``) and ``wv3``: the stretched true-colour composite
(red, green, blue by the WorldView-3 band names) of the ground truth of the real scene
``rr/wv3_cdif.mat`` under ``$PANSHARP_DATA`` (skipped when unset). Noise: additive white
Gaussian, ``sigma`` on the 0..255 scale, seed 0, not clipped. Deblurring: circular blur by a
Gaussian PSF (std 1.6 px, 15 x 15) or a motion PSF (length ``size / 16`` px at 60 degrees),
plus noise ``--deblur-sigma``. Parameters: the reference ParSet per sigma
(:func:`pansharp_jax.restoration.params_for_sigma`) with ``--iters``, ``--window`` (search
radius) and ``--step`` overridden to fit a small CPU; deblurring uses
:func:`~pansharp_jax.restoration.deblur_params` with ``--deblur-iters``. No oracle stopping:
the last iterate is scored. PSNR / SSIM: scikit-image (``data_range`` 1, SSIM over the 3
channels), on [0, 1] images.

Writes into ``--out``: ``restoration_table.csv``, ``restoration_convergence.png``
(``||x_{k+1} - x_k||_F`` per iteration, QADMM with and without continuation) and
``restoration_grid.png`` (before / after on the first image); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np


def load_images(names: list[str], size: int) -> dict[str, np.ndarray]:
    """(size, size, 3) float32 [0, 1] images by name (``wv3`` needs ``$PANSHARP_DATA``)."""
    import os

    from skimage import data, transform

    out = {}
    for name in names:
        if name == "wv3":
            if not os.environ.get("PANSHARP_DATA"):
                print("wv3 skipped: PANSHARP_DATA is unset")
                continue
            from pansharp_jax.data.io import find_input, load_scene
            from pansharp_jax.restoration.images import true_colour

            scene = load_scene(find_input("rr/wv3_cdif.mat"))
            img = true_colour(np.asarray(scene.gt), scene.sensor.rgb)
        else:
            img = getattr(data, name)().astype(np.float32) / 255.0
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out[name] = np.clip(transform.resize(img, (size, size), anti_aliasing=True), 0, 1).astype(np.float32)
    return out


def scores(clean: np.ndarray, est: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``est`` against ``clean`` on [0, 1]."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    return (
        float(peak_signal_noise_ratio(clean, est, data_range=1.0)),
        float(structural_similarity(clean, est, data_range=1.0, channel_axis=-1)),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", default="astronaut,coffee,chelsea,wv3")
    ap.add_argument("--sigmas", default="15,25,50")
    ap.add_argument("--kernels", default="gaussian,motion")
    ap.add_argument("--deblur-sigma", type=float, default=5.0)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--deblur-iters", type=int, default=12)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--step", type=int, default=4)
    ap.add_argument("--methods", default="qwsnm,qwnnm,wnnm,wsnm")
    args = ap.parse_args()

    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()
    from pansharp_jax import restoration as R

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = load_images(args.images.split(","), args.size)
    methods = args.methods.split(",")
    kernels = {"gaussian": R.gaussian_kernel(15, 1.6), "motion": R.motion_kernel(max(3, args.size // 16), 60.0)}
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    grid: dict[str, np.ndarray] = {}
    curves: dict[str, np.ndarray] = {}
    fast = {"window": args.window, "step": args.step}
    t_all = time.perf_counter()
    for name, clean in images.items():
        if not grid:
            grid["clean"] = clean
        tasks = [(f"denoise s{s}", float(s), None) for s in args.sigmas.split(",") if s]
        tasks += [(f"deblur {k} s{args.deblur_sigma:g}", args.deblur_sigma, k) for k in args.kernels.split(",") if k]
        for task, sigma, kname in tasks:
            noise = rng.normal(0.0, sigma / 255.0, clean.shape).astype(np.float32)
            degraded = (clean if kname is None else R.blur(clean, kernels[kname])) + noise
            base = scores(clean, np.clip(degraded, 0, 1))
            rows.append({"image": name, "task": task, "method": "input", "psnr": base[0], "ssim": base[1], "seconds": 0.0})
            for m in methods:
                t0 = time.perf_counter()
                if kname is None:
                    prm = R.params_for_sigma(sigma, iters=args.iters, **fast)
                    res = R.denoise(degraded, sigma, method=m, params=prm, return_info=True)
                else:
                    prm = R.deblur_params(iters=args.deblur_iters, patch=5, patches=60, **fast)
                    res = R.deblur(degraded, kernels[kname], sigma, method=m, params=prm, return_info=True)
                    if m == methods[0] and name == next(iter(images)):
                        curves[f"{m} {kname}, continuation mu={prm.mu}"] = res.diffs
                        fixed = dataclasses.replace(prm, mu=1.0)
                        curves[f"{m} {kname}, fixed beta (mu=1)"] = R.deblur(
                            degraded, kernels[kname], sigma, method=m, params=fixed, return_info=True
                        ).diffs
                sec = time.perf_counter() - t0
                ps, ss = scores(clean, res.image)
                rows.append({"image": name, "task": task, "method": m, "psnr": ps, "ssim": ss, "seconds": sec})
                print(f"{name:10s} {task:22s} {m:6s} PSNR {ps:6.2f} SSIM {ss:.4f} ({sec:.1f} s)", flush=True)
                if name == next(iter(images)) and task in ("denoise s25", f"deblur motion s{args.deblur_sigma:g}"):
                    grid[f"{task}: input"] = np.clip(degraded, 0, 1)
                    grid[f"{task}: {m}"] = res.image
    write_outputs(out, rows, curves, grid, methods)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s; size {args.size}, denoise iters {args.iters}, "
          f"deblur iters {args.deblur_iters}, window {args.window}, step {args.step}")  # fmt: skip


def markdown(rows: list[dict[str, Any]], methods: list[str]) -> str:
    """A Markdown table: one row per (image, task), PSNR / SSIM per method."""
    cols = ["input", *methods]
    lines = ["| image | task | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    keys = list(dict.fromkeys((r["image"], r["task"]) for r in rows))
    for img, task in keys:
        cell = {r["method"]: r for r in rows if r["image"] == img and r["task"] == task}
        vals = [f"{cell[c]['psnr']:.2f} / {cell[c]['ssim']:.3f}" if c in cell else "-" for c in cols]
        lines.append(f"| {img} | {task} | " + " | ".join(vals) + " |")
    means = []
    for c in cols:
        rs = [r for r in rows if r["method"] == c]
        means.append(f"{np.mean([r['psnr'] for r in rs]):.2f} / {np.mean([r['ssim'] for r in rs]):.3f}" if rs else "-")
    lines.append("| **mean** | | " + " | ".join(means) + " |")
    return "\n".join(lines)


def write_outputs(out: Path, rows: list[dict[str, Any]], curves: dict[str, np.ndarray], grid: dict[str, np.ndarray], methods: list[str]) -> None:
    """CSV, convergence plot, image grid; print the Markdown table (PSNR dB / SSIM)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(out / "restoration_table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "task", "method", "psnr", "ssim", "seconds"])
        w.writeheader()
        w.writerows(rows)
    print("\nPSNR (dB) / SSIM, last iterate (no oracle stopping):\n")
    print(markdown(rows, methods))
    if curves:
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        for label, d in curves.items():
            ax.semilogy(np.arange(1, len(d) + 1), np.maximum(d, 1e-8), marker="o", ms=3, label=label)
        ax.set_xlabel("QADMM iteration k")
        ax.set_ylabel("||x_{k+1} - x_k||_F")
        ax.set_title("Deblurring: successive differences")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "restoration_convergence.png")
        plt.close(fig)
    if grid:
        n = len(grid)
        ncol = min(n, 6)
        nrow = -(-n // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(1.9 * ncol, 2.0 * nrow), dpi=60)
        for ax in np.ravel(axes):
            ax.axis("off")
        for ax, (label, img) in zip(np.ravel(axes), grid.items()):
            ax.imshow(np.clip(img, 0, 1))
            ax.set_title(label, fontsize=6)
        fig.tight_layout()
        fig.savefig(out / "restoration_grid.png")
        plt.close(fig)
    print(f"\nwrote {out / 'restoration_table.csv'}, {out / 'restoration_convergence.png'}, {out / 'restoration_grid.png'}")


if __name__ == "__main__":
    main()

"""QWSNM speed: seconds per colour image (denoising and QADMM deblurring) on the default JAX device.

Usage::

    python benchmarks/qwsnm_speed.py [--size 256] [--sigma 25] [--methods qwsnm,qwnnm,wnnm]
        [--iters N] [--window R] [--step S] [--deblur-iters N] [--runs 1]

One ``--size`` x ``--size`` image (scikit-image's ``astronaut``, resized) with Gaussian noise
``--sigma`` (0..255 scale). Denoising uses the reference parameter set for ``--sigma``
(:func:`pansharp_jax.restoration.params_for_sigma`: patch 5, 90 patches, 20 iterations,
search radius 30, reference step 1 at sigma 25) unless ``--iters``, ``--window`` or
``--step`` override it; deblurring (Gaussian PSF) uses
:func:`~pansharp_jax.restoration.deblur_params` with the same overrides. Each method: the
first call (compile + run) and the median of ``--runs`` further calls, plus seconds per
iteration. Prints the JAX device (CPU, or GPU when JAX sees one).
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import first_and_median




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--methods", default="qwsnm,qwnnm,wnnm")
    ap.add_argument("--iters", type=int)
    ap.add_argument("--deblur-iters", type=int)
    ap.add_argument("--window", type=int)
    ap.add_argument("--step", type=int)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--no-deblur", action="store_true")
    args = ap.parse_args()

    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()
    import jax
    from skimage import data, transform

    from pansharp_jax import restoration as R

    img = transform.resize(data.astronaut()[:, 56:456], (args.size, args.size), anti_aliasing=True).astype(np.float32)
    noisy = img + np.random.default_rng(0).normal(0, args.sigma / 255, img.shape).astype(np.float32)
    over = {k: getattr(args, k) for k in ("iters", "window", "step") if getattr(args, k) is not None}
    dn = R.params_for_sigma(args.sigma, **over)
    db = R.deblur_params(**{**over, "iters": args.deblur_iters or over.get("iters", 20)})
    k = R.gaussian_kernel(15, 1.6)
    blurred = R.blur(img, k) + np.random.default_rng(1).normal(0, 5 / 255, img.shape).astype(np.float32)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); image {args.size}x{args.size}x3")
    print(f"denoise: {dn}")
    if not args.no_deblur:
        print(f"deblur:  {db}")
    print("| task | method | first call (s) | per image (s) | per iteration (s) |")
    print("|---|---|---|---|---|")
    for m in args.methods.split(","):
        first, steady = first_and_median(lambda: R.denoise(noisy, args.sigma, method=m, params=dn), args.runs)
        base = steady if args.runs else first
        print(f"| denoise s{args.sigma:g} | {m} | {first:.1f} | {steady:.1f} | {base / dn.iters:.2f} |", flush=True)
        if not args.no_deblur:
            first, steady = first_and_median(lambda: R.deblur(blurred, k, 5.0, method=m, params=db), args.runs)
            base = steady if args.runs else first
            print(f"| deblur gaussian | {m} | {first:.1f} | {steady:.1f} | {base / db.iters:.2f} |", flush=True)


if __name__ == "__main__":
    main()

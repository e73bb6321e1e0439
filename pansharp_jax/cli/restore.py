"""``pansharp restore``: colour image denoising / deblurring with QWSNM (quaternion domain).

::

    pansharp restore --task denoise --sigma 25 --input noisy.png --out clean.png
    pansharp restore --task deblur --sigma 5 --kernel motion --length 20 --angle 60 -i blurred.tif -o sharp.tif
    pansharp restore --task denoise --sigma 15 -i fused_wv3.tif --bands 5,3,2 -o rgb.png   # pan-sharpened product

Images are read as (H, W, 3) on [0, 1] (:mod:`pansharp_jax.restoration.images`): PNG/JPEG,
3-band TIFF, or the true-colour composite of a multi-band (pan-sharpened) GeoTIFF, percentile
stretched (2-98 %) band by band. ``--sigma`` is the noise standard deviation on the 0..255
scale. Deblurring assumes the circular blur by the given kernel (``--kernel``). Output: PNG
(8 bits) or float32 TIFF on [0, 1] (GeoTIFF, with the input's georeference when it had one).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pansharp_jax.cli._common import console, input_path
from pansharp_jax.errors import InputError

TASKS = ("denoise", "deblur")
KERNELS = ("gaussian", "motion")


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``restore`` on the sub-command parser ``sub``."""
    p = sub.add_parser(
        "restore", parents=parents, help="denoise or deblur a colour image (QWSNM, quaternion domain)",
        description="Colour image restoration by quaternion weighted Schatten p-norm minimisation (QWSNM) "
        "on non-local patch groups; deblurring by QADMM with continuation.",
    )  # fmt: skip
    p.add_argument("--task", required=True, metavar="TASK", help="denoise or deblur")
    p.add_argument("--sigma", required=True, type=float, help="noise standard deviation on the 0..255 scale")
    p.add_argument("--input", "-i", required=True, metavar="IMG", help="PNG, JPEG, TIFF or GeoTIFF; relative paths are also looked up under $PANSHARP_DATA")
    p.add_argument("--out", "-o", required=True, metavar="IMG", help="output .png (8 bits) or .tif (float32 on [0, 1])")
    p.add_argument("--method", default="qwsnm", help="qwsnm (default), qwnnm, wnnm or wsnm (per channel)")
    p.add_argument("--p", type=float, default=None, help="Schatten exponent in (0, 1] for qwsnm/wsnm (default 0.9)")
    p.add_argument("--kernel", default="gaussian", metavar="K", help="deblur: gaussian (default) or motion")
    p.add_argument("--std", type=float, default=1.6, help="gaussian kernel std in pixels (default 1.6; 25 x 25 support)")
    p.add_argument("--length", type=int, default=20, help="motion kernel length in pixels (default 20)")
    p.add_argument("--angle", type=float, default=60.0, help="motion kernel angle in degrees (default 60)")
    p.add_argument("--bands", metavar="R,G,B", help="1-based red, green, blue bands of a multi-band GeoTIFF (default: by sensor band names)")
    g = p.add_argument_group("solver (defaults: the reference parameter set for --sigma)")
    g.add_argument("--iters", type=int, help="outer / QADMM iterations")
    g.add_argument("--patch", type=int, help="patch side in pixels")
    g.add_argument("--patches", type=int, help="patches per group")
    g.add_argument("--window", type=int, help="search radius in pixels")
    g.add_argument("--step", type=int, help="reference patch grid step in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_restore)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {k: getattr(args, k) for k in ("iters", "patch", "patches", "window", "step") if getattr(args, k) is not None}
    for k, v in out.items():
        if v < (0 if k == "window" else 1):
            raise InputError(f"--{k} must be {'>= 0' if k == 'window' else 'positive'}, got {v}")
    return out


def cmd_restore(args: argparse.Namespace) -> int:
    """Read, restore, write; print one summary line."""
    from pansharp_jax import restoration as R
    from pansharp_jax.restoration.images import check_output, parse_bands, read_image, write_image

    task = str(args.task).lower()
    if task not in TASKS:
        raise InputError(f"unknown task '{args.task}': use denoise or deblur")
    if not args.sigma > 0:
        raise InputError(f"--sigma must be positive (0..255 scale), got {args.sigma}")
    kname = str(args.kernel).lower()
    if task == "deblur" and kname not in KERNELS:
        raise InputError(f"unknown kernel '{args.kernel}': use gaussian or motion")
    bands = parse_bands(args.bands)
    over = _overrides(args)
    src = input_path(args.input)
    out = check_output(args.out, args.overwrite)
    if out.resolve() == src.resolve():
        raise InputError("--out is the input file")
    image, georef = read_image(src, bands)
    t0 = time.perf_counter()
    if task == "denoise":
        params = R.params_for_sigma(args.sigma, **over)
        result = R.denoise(image, args.sigma, method=args.method, p=args.p, params=params, progress=not args.no_progress)
        what = f"denoised (sigma {args.sigma:g})"
    else:
        kernel = R.gaussian_kernel(25, args.std) if kname == "gaussian" else R.motion_kernel(args.length, args.angle)
        params = R.deblur_params(**over)
        result = R.deblur(image, kernel, args.sigma, method=args.method, p=args.p, params=params, progress=not args.no_progress)
        what = f"deblurred ({kname} kernel, sigma {args.sigma:g})"
    write_image(out, result, georef if out.suffix.lower() != ".png" else None)
    console().print(
        f"{src.name}: {image.shape[0]}x{image.shape[1]} {what} with {args.method} in {time.perf_counter() - t0:.1f} s -> {out}",
        markup=False, soft_wrap=True,
    )  # fmt: skip
    return 0

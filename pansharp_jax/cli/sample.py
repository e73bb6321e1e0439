"""``pansharp sample``: the mean and per-pixel spread of S draws of a generative method.

::

    pansharp sample --method sbm --ckpt runs/sbm --steps 5 --samples 8 -i rr/wv3_cdif.mat -o sbm.npz
    pansharp sample --method sbm --ckpt runs/sbm --steps 5 --samples 8 -i rr/wv3_cdif.mat -o sbm.tif --seed 3

The mean is the product, clipped to [0, 1] as ``pansharp fuse`` products (``--no-clip`` keeps
raw values in ``.npz``/``.mat``); the std (ddof 0, on the [0, 1] scale) is never clipped.
Outputs: ``.npz`` holds ``fused`` and ``std`` (float32, [0, 1] scale) plus ``sensor``,
``ratio``, ``bits``, ``samples``, ``steps``, ``seed``; ``.mat`` holds ``I_F`` and ``I_F_std``
(both DN, as the toolbox's ``I_F``); ``.tif`` is the mean as a DN Cloud-Optimized GeoTIFF
(as ``fuse``) plus ``<stem>_std.tif`` beside it, a float32 COG of the std on the [0, 1]
scale with the same georeference. Every output path is checked before anything is computed;
existing files are replaced only with ``--overwrite``. The draws are one vmapped call: draw s
uses ``split(PRNGKey(seed), samples)[s]``, so a seed gives the same files every run.
Deterministic methods are refused (exit 2): use ``pansharp fuse``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.cli._common import console, input_args, input_path, load, model_args, output_file, say_method_fit, say_origin
from pansharp_jax.errors import InputError


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``sample`` on the sub-command parser ``sub``."""
    p = sub.add_parser("sample", parents=parents, help="mean and per-pixel std of S draws of a generative method",
                       description="Draw S samples of a generative method (sbm, ssdiff, crossdiff) and write their mean (the product) and per-pixel std.")  # fmt: skip
    input_args(p)
    p.add_argument("--method", "-m", required=True, help="a generative method: sbm, ssdiff, crossdiff (one network pass per draw; --steps ignored)")
    model_args(p)
    p.add_argument("--steps", type=int, default=5, metavar="N", help="sampler steps (network calls) per draw (default: 5)")
    p.add_argument("--samples", type=int, default=8, metavar="S", help="draws averaged into the mean (default: 8)")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="random seed of the draws (default: 0)")
    p.add_argument("--out", "-o", required=True, metavar="OUT", help="output file: .npz (fused and std on [0, 1]), .mat (I_F and I_F_std in DN) or .tif (DN COG of the mean plus <stem>_std.tif, float32)")
    p.add_argument("--no-clip", action="store_true", help="keep the raw mean in .npz/.mat (default: clip to [0, 1])")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_sample)


def std_path(out: Path) -> Path:
    """The std GeoTIFF written beside a ``.tif`` product: ``<stem>_std.tif``."""
    return out.with_name(f"{out.stem}_std{out.suffix}")


def cmd_sample(args: argparse.Namespace) -> int:
    """Sample one scene; print a start line and a summary line."""
    from pansharp_jax.methods import finish_product, resolve
    from pansharp_jax.products.geotiff import check_output_path

    if args.steps < 1 or args.samples < 1:
        raise InputError(f"--steps and --samples must be >= 1, got {args.steps} and {args.samples}")
    inputs = [input_path(args.input)] + ([input_path(args.pan)] if args.pan else [])
    out = output_file(args.out, overwrite=args.overwrite, inputs=inputs)
    tif = out.suffix.lower() in (".tif", ".tiff")
    if tif:
        check_output_path(std_path(out), overwrite=args.overwrite, inputs=inputs)
    method = resolve(args.method, weights=args.weights, ckpt=args.ckpt)
    if not method.generative:
        raise InputError(
            f"{method.label} is deterministic: 'sample' is for generative methods (sbm, ssdiff, crossdiff); use 'pansharp fuse -m {method.name}'"
        )
    say_origin(method)
    scene = load(args)
    method.check(scene.nbands, scene.ratio, scene.name)
    say_method_fit(method, scene.sensor.name, scene.ratio)
    h, w = scene.pan.shape[:2]
    what = f"{scene.name} ({h}x{w}x{scene.nbands}): {args.samples} draws x {args.steps} steps, seed {args.seed}"
    console().print(f"{method.label}: sampling {what} ...", markup=False)
    t0 = time.perf_counter()
    mean, std = method.sample(scene, samples=args.samples, steps=args.steps, rng=args.seed)
    seconds = time.perf_counter() - t0
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise InputError(f"{method.label} produced NaN/Inf on {scene.name}: check the checkpoint (a diverged run?)")
    fused = finish_product(mean) if (tif or not args.no_clip) else mean
    _write(out, fused, std, method, scene, args)
    extra = f" (+ {std_path(out).name})" if tif else ""
    console().print(
        f"{method.label}: {args.samples} draws x {args.steps} steps of {scene.name} in {seconds:.2f} s; "
        f"std mean {float(std.mean()):.4g}, max {float(std.max()):.4g} -> {out}{extra}",
        markup=False,
    )
    return 0


def _write(out: Path, fused: np.ndarray, std: np.ndarray, method: Any, scene: Any, args: argparse.Namespace) -> None:
    """The mean product and its std (formats: module docstring)."""
    from pansharp_jax.data.io import _atomic_write

    ext = out.suffix.lower()
    if ext in (".tif", ".tiff"):
        from pansharp_jax.cli.fuse import _write_array
        from pansharp_jax.products.engine import SceneSource
        from pansharp_jax.products.geotiff import CogWriter, band_descriptions

        _write_array(out, fused, method, SceneSource(scene), scene, args)
        what = f"per-pixel std of {args.samples} draws ({args.steps} steps, seed {args.seed}), [0, 1] scale"
        tags = {**dict(method.tags), "content": what}
        with CogWriter(
            std_path(out), height=std.shape[0], width=std.shape[1], bands=std.shape[2], dtype=np.float32, georef=scene.georef,
            band_descriptions=band_descriptions(scene.sensor, scene.nbands), tags=tags, overwrite=args.overwrite,
        ) as writer:  # fmt: skip
            writer.write(0, 0, std.astype(np.float32))
    elif ext == ".mat":
        import scipy.io

        payload = {"I_F": fused * scene.max_dn, "I_F_std": std * scene.max_dn}
        _atomic_write(out, lambda fh: scipy.io.savemat(fh, payload, format="5"), ".mat")
    else:
        payload = {
            "fused": fused.astype(np.float32), "std": std.astype(np.float32), "sensor": np.array(scene.sensor.name),
            "ratio": np.array(scene.ratio), "bits": np.array(scene.bits), "samples": np.array(args.samples),
            "steps": np.array(args.steps), "seed": np.array(args.seed),
        }  # fmt: skip
        _atomic_write(out, lambda fh: np.savez(fh, **payload), ".npz")

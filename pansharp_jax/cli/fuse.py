"""``pansharp fuse``: one scene, or a catalogue of scenes, with one method.

::

    pansharp fuse -m gsa -i scene.mat -o fused.tif
    pansharp fuse -m fusionnet --weights fusionnet/WV3/fusionnet.pth -i ms.tif --pan pan.tif -o fused.tif --tile 512
    pansharp fuse -m mtf_glp_fs -i scenes/ -o products/ --tile 1024      # every scene of a folder (or a glob)

Products are clipped to [0, 1] (``--no-clip`` keeps raw values in ``.npz``/``.mat``;
GeoTIFF products are DN rounded to integers and always within [0, 2**bits - 1]).
``.tif`` products are Cloud-Optimized GeoTIFFs (tiled, deflate, overviews) with the
PAN's CRS and transform, band names, nodata 0 and tags naming the method, weights
(SHA-256), package version and date. GeoTIFF scenes are read and written window by
window; ``--tile N`` fuses N x N cores with the method's overlap margin, and
``--max-memory GiB`` picks the largest tile whose planned memory fits (whole scene when
it fits). An existing output is replaced only with ``--overwrite``; an input is never
written over. In a catalogue, finished products are skipped, so a killed run resumes.

Learned models take ``--precision bf16`` (parameters and inputs cast to bfloat16, every layer
computing in bf16, the output float32; see :mod:`pansharp_jax.train.precision`) and
``--matmul-precision`` (``default`` | ``tf32`` | ``highest``: float32 matmuls and convs).
"""

from __future__ import annotations

import argparse
import glob
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.cli._common import (
    console,
    input_args,
    input_path,
    load,
    model_args,
    output_dir,
    output_file,
    say_assumed,
    say_method_fit,
    say_origin,
    warn,
)
from pansharp_jax.errors import InputError

SCENE_EXTS = (".mat", ".h5", ".hdf5", ".npz")


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``fuse`` on the sub-command parser ``sub``."""
    p = sub.add_parser("fuse", parents=parents, help="fuse one scene (or a folder of scenes) with one method",
                       description="Fuse a scene with one method and write the product (clipped to the valid range).")  # fmt: skip
    input_args(p, many=True)
    p.add_argument("--method", "-m", required=True, help="method name (see the list below)")
    model_args(p)
    g = p.add_argument_group("precision (learned methods)")
    g.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="compute precision of a learned model: fp32 (default) or bf16 (float32 parameters cast to bfloat16; float32 output)")
    g.add_argument("--matmul-precision", choices=("default", "tf32", "highest"), default=None, help="float32 matmuls/convs: the backend's default (TF32 on recent NVIDIA GPUs), tf32, or highest (full float32); no effect on CPU")
    p.add_argument("--out", "-o", required=True, metavar="OUT", help="output file: .tif (DN Cloud-Optimized GeoTIFF), .mat (I_F in DN) or .npz (fused on [0, 1]); a folder for a catalogue")
    p.add_argument("--format", default=".tif", choices=(".tif", ".mat", ".npz"), help="product format in a catalogue (default: .tif)")
    p.add_argument("--no-clip", action="store_true", help="keep the raw values (default: clip products to [0, 1])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    g = p.add_argument_group("scenes larger than memory")
    g.add_argument("--tile", type=int, metavar="N", help="fuse N x N PAN-pixel tiles with an overlap margin (default: the whole scene when it fits)")
    g.add_argument("--max-memory", type=float, metavar="GIB", help="pick the tile size so that XLA's planned memory stays under GIB (default: whole scene)")
    g.add_argument("--batch", type=int, default=1, metavar="B", help="tiles per compiled call (default: 1)")
    g.add_argument("--margin", type=int, metavar="PX", help="overlap margin in PAN pixels (default: the method's receptive field)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fuse)
    base = p.format_help

    def format_help(self: argparse.ArgumentParser) -> str:  # the method list, built only when asked
        from pansharp_jax.methods import known_methods

        return base() + "\nmethods: " + ", ".join(known_methods()) + "\n"

    p.format_help = types.MethodType(format_help, p)  # type: ignore[method-assign]


def _is_catalogue(text: str) -> bool:
    return any(ch in text for ch in "*?[") or Path(text).is_dir()


def catalogue_scenes(spec: str) -> list[tuple[Path, Path | None]]:
    """The scenes of a folder or glob: ``(scene, pan)`` pairs, sorted.

    ``.mat``/``.h5``/``.npz`` files are scenes; GeoTIFF pairs are ``NAME_ms.tif`` +
    ``NAME_pan.tif`` (``.tiff`` too). Other files are ignored.
    """
    if any(ch in spec for ch in "*?["):
        files = [Path(p) for p in sorted(glob.glob(spec))]
    else:
        root = input_path(spec)
        files = sorted(p for p in root.iterdir() if p.is_file())
    out: list[tuple[Path, Path | None]] = []
    for f in files:
        low = f.name.lower()
        if f.suffix.lower() in SCENE_EXTS:
            out.append((f, None))
        elif low.endswith(("_ms.tif", "_ms.tiff")):
            stem = f.name[: low.rindex("_ms.")]
            pan = next((f.with_name(stem + s) for s in ("_pan.tif", "_pan.tiff", "_PAN.tif") if f.with_name(stem + s).is_file()), None)
            if pan is None:
                warn(f"{f.name}: no {stem}_pan.tif beside it; skipped")
            else:
                out.append((f, pan))
    if not out:
        raise InputError(f"no scenes in {spec}: expected .mat/.h5/.npz files or NAME_ms.tif + NAME_pan.tif pairs")
    return out


def _stem(scene: Path) -> str:
    low = scene.name.lower()
    return scene.name[: low.rindex("_ms.")] if "_ms.t" in low else scene.stem


# GDAL's block cache holds written tiles until overviews are built: bounded (MiB) unless
# the user set GDAL_CACHEMAX; one row of 512-pixel tiles of a 40,000-pixel 8-band product
# is 330 MiB.
GDAL_CACHE_MIB = "512"


def cmd_fuse(args: argparse.Namespace) -> int:
    """Fuse one scene, or every scene of a catalogue."""
    import os

    from pansharp_jax.methods import resolve

    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MIB)
    if args.tile is not None and args.tile < 1:
        raise InputError(f"--tile must be a positive number of PAN pixels, got {args.tile}")
    if args.max_memory is not None and args.max_memory <= 0:
        raise InputError(f"--max-memory must be > 0 GiB, got {args.max_memory}")
    if args.batch < 1:
        raise InputError(f"--batch must be >= 1, got {args.batch}")
    if _is_catalogue(args.input):
        return _fuse_catalogue(args)
    inputs = [input_path(args.input)] + ([input_path(args.pan)] if args.pan else [])
    out = output_file(args.out, overwrite=args.overwrite, inputs=inputs)
    method = resolve(args.method, weights=args.weights, ckpt=args.ckpt, **_precision_options(args))
    say_origin(method)
    _say_precision(method)
    line = fuse_one(method, args, inputs[0], inputs[1] if len(inputs) > 1 else None, out)
    console().print(line, markup=False)
    return 0


def _fuse_catalogue(args: argparse.Namespace) -> int:
    from pansharp_jax.methods import resolve

    if args.pan:
        raise InputError("--pan is for one GeoTIFF scene; in a folder, pairs are NAME_ms.tif + NAME_pan.tif")
    scenes = catalogue_scenes(args.input)
    out_dir, created = output_dir(args.out)
    if created:
        console().print(f"created {out_dir}/", markup=False)
    method = resolve(args.method, weights=args.weights, ckpt=args.ckpt, **_precision_options(args))  # one method, compiled once per shape
    say_origin(method)
    _say_precision(method)
    done = skipped = 0
    t0 = time.perf_counter()
    for k, (scene, pan) in enumerate(scenes, 1):
        product = out_dir / f"{_stem(scene)}_{method.name}{args.format}"
        if product.exists() and not args.overwrite:
            console().print(f"[{k}/{len(scenes)}] {product.name} exists: skipped", markup=False)
            skipped += 1
            continue
        inputs = [scene] + ([pan] if pan else [])
        target = output_file(product, overwrite=args.overwrite, inputs=inputs)
        line = fuse_one(method, args, scene, pan, target)
        console().print(f"[{k}/{len(scenes)}] {line}", markup=False)
        done += 1
    console().print(f"catalogue: {done} fused, {skipped} skipped (already there) in {time.perf_counter() - t0:.1f} s -> {out_dir}", markup=False)
    return 0


def _say_precision(method: Any) -> None:
    """One line when a learned method computes in a reduced precision (its tags say so)."""
    tags = method.tags or {}
    if tags.get("precision", "fp32") != "fp32":
        mm = tags.get("matmul_precision", "default")
        console().print(f"{method.label}: computing in {tags['precision']} (float32 parameters; matmul precision {mm})", markup=False)


def _precision_options(args: argparse.Namespace) -> dict[str, str | None]:
    """``--precision`` / ``--matmul-precision`` as :func:`~pansharp_jax.methods.resolve` options (None: not given)."""
    return {"precision": getattr(args, "precision", None), "matmul_precision": getattr(args, "matmul_precision", None)}


def _source_for(args: argparse.Namespace, scene_path: Path, pan_path: Path | None) -> tuple[Any, Any]:
    """(window source, in-memory Scene or None) of one input."""
    from pansharp_jax.data.io_mat import sniff_format
    from pansharp_jax.products.engine import SceneSource

    if sniff_format(scene_path) == "tiff":
        if pan_path is None:
            raise InputError(f"{scene_path.name} is a GeoTIFF: pass the PAN GeoTIFF too (--pan)")
        from pansharp_jax.products.geotiff import GeoTiffPair

        pair = GeoTiffPair.open(scene_path, pan_path, sensor=args.sensor, bits=args.bits, ratio=args.ratio)
        say_assumed(pair.assumed)
        return pair, None
    ns = argparse.Namespace(**{**vars(args), "input": str(scene_path)})
    scene = load(ns, scene_path)
    return SceneSource(scene), scene


def fuse_one(method: Any, args: argparse.Namespace, scene_path: Path, pan_path: Path | None, out: Path) -> str:
    """Fuse one scene into ``out`` with the tiling options of ``args``; a one-line report."""
    from pansharp_jax.products import engine

    t0 = time.perf_counter()
    source, scene = _source_for(args, scene_path, pan_path)
    try:
        method.check(source.nbands, source.ratio, source.name)
        say_method_fit(method, source.sensor.name, source.ratio)
        tile = args.tile
        if tile is None and args.max_memory is not None:
            tile, planned = engine.choose_tile(method, source, args.max_memory * 2**30, margin=args.margin)
            if tile is not None and planned is not None and planned > args.max_memory * 2**30:
                warn(f"even {tile}-pixel tiles plan {planned / 2**30:.2f} GiB, over --max-memory {args.max_memory:g}")
        clip = not args.no_clip
        progress = not args.no_progress
        h, w = source.height, source.width
        tiles_note = ""
        if tile is None:
            fused = engine.fuse_source(method, source, clip=clip)
            _write_array(out, fused, method, source, scene, args)
        elif out.suffix.lower() in (".tif", ".tiff"):
            from pansharp_jax.products.geotiff import CogWriter, band_descriptions

            dtype = np.uint16 if source.bits <= 16 else np.uint32
            with CogWriter(
                out, height=h, width=w, bands=source.nbands, dtype=dtype, georef=_georef(source), nodata=0,
                band_descriptions=band_descriptions(source.sensor, source.nbands), tags=dict(method.tags), overwrite=args.overwrite,
            ) as writer:  # fmt: skip
                rep = engine.fuse_tiled(
                    method, source, engine.CogSink(writer, 2**source.bits - 1, dtype), tile=tile, batch=args.batch,
                    margin=args.margin, clip=clip, progress=progress,
                )  # fmt: skip
            tiles_note = f", {rep.tiles} tiles of {rep.window[0]}x{rep.window[1]} (margin {rep.margin})"
        else:
            sink = engine.ArraySink(h, w, source.nbands)
            rep = engine.fuse_tiled(method, source, sink, tile=tile, batch=args.batch, margin=args.margin, clip=clip, progress=progress)
            _write_array(out, sink.array, method, source, scene, args)
            tiles_note = f", {rep.tiles} tiles of {rep.window[0]}x{rep.window[1]} (margin {rep.margin})"
    finally:
        if scene is None:
            source.close()
    seconds = time.perf_counter() - t0
    mpix = h * w / 1e6
    return f"{method.label}: fused {source.name} ({h}x{w}x{source.nbands}) in {seconds:.2f} s ({mpix / seconds:.2f} MPix/s{tiles_note}) -> {out}"


def _georef(source: Any) -> Any:
    return getattr(source, "georef", None)


def _write_array(out: Path, fused: np.ndarray, method: Any, source: Any, scene: Any, args: argparse.Namespace) -> None:
    """Write a whole in-memory product (.tif as a COG, .mat/.npz via save_fused)."""
    if out.suffix.lower() in (".tif", ".tiff"):
        from pansharp_jax.products.geotiff import band_descriptions, write_fused_cog

        write_fused_cog(
            out, fused, georef=_georef(source), bits=source.bits, band_descriptions=band_descriptions(source.sensor, source.nbands),
            tags=dict(method.tags), overwrite=args.overwrite, nodata=0,
        )  # fmt: skip
        return
    from pansharp_jax.data.io import save_fused

    if scene is None:  # a GeoTIFF pair fused whole: its metadata as a scene
        from pansharp_jax.data.scene import Scene

        lr = source.read_lrms(0, source.height // source.ratio, 0, source.width // source.ratio)
        scene = Scene(lrms=lr, pan=source.read_pan(0, source.height, 0, source.width), sensor=source.sensor,
                      ratio=source.ratio, bits=source.bits, name=source.name, georef=_georef(source))  # fmt: skip
    save_fused(out, fused, scene)

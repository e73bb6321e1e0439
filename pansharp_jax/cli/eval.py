"""``pansharp eval``: score a fused product.

Reduced resolution (Q2n, Q_avg, SAM, ERGAS, SCC, PSNR, SSIM vs the GT) when the scene
has a GT, full resolution (D_lambda, D_lambda_K, D_S, QNR, HQNR) otherwise. For large
full-resolution GeoTIFF products, ``--tile N`` computes the full-resolution indices
window by window (tiles aligned to the metrics' 32-pixel block grid, so the values equal
the whole-scene ones; see :mod:`pansharp_jax.metrics.full_tiled`). ``--protocol NAME``
scores under another group's evaluation convention (:mod:`pansharp_jax.metrics.protocols`);
the table and the JSON name it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.cli._common import MODES, console, evaluate, input_args, input_path, load, pick_mode, protocol_arg, protocol_label, read_fused
from pansharp_jax.errors import InputError


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``eval`` on the sub-command parser ``sub``."""
    p = sub.add_parser("eval", parents=parents, help="score a fused product", description="Score a fused product: reduced resolution with GT, full resolution without.")
    p.add_argument("--fused", "-f", required=True, metavar="OUT", help="the fused product (.tif/.mat/.npz)")
    input_args(p)
    p.add_argument("--mode", choices=MODES, default="auto", help="rr (vs GT), fr (no reference) or auto (rr when the scene has a GT)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--tile", type=int, metavar="N", help="full resolution of a GeoTIFF scene and product, window by window (N a multiple of 32)")
    protocol_arg(p)
    p.set_defaults(func=cmd_eval)


def _write_json(path: Path, text: str) -> None:
    parent = path.absolute().parent
    if not parent.is_dir():
        raise InputError(f"the folder of --json {path} does not exist ({parent}): create it first")
    path.write_text(text, encoding="utf-8")


def _eval_tiled(args: argparse.Namespace) -> tuple[dict[str, float], Any]:
    """Full-resolution indices of a GeoTIFF product on a GeoTIFF pair, window by window."""
    import rasterio

    from pansharp_jax.data.sensors import get_sensor
    from pansharp_jax.metrics.full_tiled import evaluate_full_tiled
    from pansharp_jax.metrics.protocols import get_protocol
    from pansharp_jax.products.geotiff import GeoTiffPair

    if args.tile % 32:
        raise InputError(f"--tile must be a multiple of the 32-pixel block of the metrics, got {args.tile}")
    if args.pan is None:
        raise InputError("--tile evaluates GeoTIFF scenes window by window: give the MS GeoTIFF as --input and the PAN as --pan")
    protocol = get_protocol(args.protocol)
    if protocol.full_clip or protocol.block != 32:
        raise InputError(f"--tile does not support protocol {protocol.name} (it clips its inputs or changes the block): score the whole scene")
    fused_path = input_path(args.fused)
    pair = GeoTiffPair.open(input_path(args.input), input_path(args.pan), sensor=args.sensor, bits=args.bits, ratio=args.ratio)
    try:
        with rasterio.open(fused_path) as src:
            if (src.height, src.width, src.count) != (pair.height, pair.width, pair.nbands):
                raise InputError(
                    f"fused image {fused_path.name} is {src.height}x{src.width}x{src.count}, expected "
                    f"{pair.height}x{pair.width}x{pair.nbands} (PAN size x MS bands)"
                )
            integer = np.dtype(src.dtypes[0]).kind in "iu"

            def read_fused_window(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
                from rasterio.windows import Window

                a = np.moveaxis(src.read(window=Window(c0, r0, c1 - c0, r1 - r0)), 0, -1).astype(np.float64)
                return a / pair.max_dn if integer or float(a.max(initial=0.0)) > 1.5 else a

            sensor = pair.sensor.name
            scores = evaluate_full_tiled(
                read_fused_window, pair.read_pan, pair.read_lrms_all(), height=pair.height, width=pair.width,
                ratio=pair.ratio, sensor=get_sensor(protocol.mtf_sensor.get(sensor, sensor)),
                max_dn=protocol.max_dn_full(sensor, pair.max_dn), tile=args.tile,
            )  # fmt: skip
    finally:
        pair.close()
    return {k: float(v) for k, v in scores.items()}, pair


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a product (see module docstring)."""
    from pansharp_jax.report import MetricTable, print_table
    from pansharp_jax.report.tables import metrics_json

    name = Path(args.fused).name
    if args.tile is not None:
        if args.mode == "rr":
            raise InputError("--tile computes the full-resolution indices only: use --mode fr or auto")
        scores, pair = _eval_tiled(args)
        label = args.protocol
        mode, scene_name, sensor, ratio = "fr", pair.name, pair.sensor.name, pair.ratio
    else:
        scene = load(args)
        mode = pick_mode(scene, args.mode)
        scores = evaluate(read_fused(args.fused, scene), scene, mode, args.protocol)
        scene_name, sensor, ratio = scene.name, scene.sensor.name, scene.ratio
        label = protocol_label(scene, mode, args.protocol)  # what the table and JSON name
    table = MetricTable(mode, scene_name, sensor, ratio, protocol=label)
    table.add(name, name, scores)
    print_table(table, console())
    if args.json:
        _write_json(Path(args.json), metrics_json(scores, mode=mode, scene=scene_name, fused=str(args.fused), sensor=sensor, ratio=ratio, protocol=label))
    return 0

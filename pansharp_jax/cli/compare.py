"""``pansharp compare``: several methods on one scene; metric tables and image grids.

::

    pansharp compare -i scene.mat --methods exp,gsa,fusionnet,cannet \\
        --weights fusionnet=fusionnet/WV3/fusionnet.pth,cannet=cannet/cannet_wv3.pth -o report/ --save-products

Writes ``metrics.{csv,json,md}``, ``grid.png`` (scores in the panel titles) and
``grid_zoom.png`` (the same panels on a ``--zoom``-pixel crop, by default the centre),
and with ``--save-products`` each fused product as ``<method>.npz``. Products are
clipped to [0, 1] before scoring (``--no-clip`` scores the raw outputs).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pansharp_jax.cli._common import MODES, console, evaluate, input_args, load, model_args, output_dir, pick_mode, say_method_fit, say_origin
from pansharp_jax.errors import InputError

if TYPE_CHECKING:
    from pansharp_jax.data.scene import Scene
    from pansharp_jax.methods import Method
    from pansharp_jax.report.tables import MetricTable

# Scores shown in grid titles: the headline metric pair of each mode.
TITLE_SCORES = {"rr": ("SAM", "ERGAS"), "fr": ("D_lambda", "D_S")}
ZOOM_PX = 256


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``compare`` on the sub-command parser ``sub``."""
    p = sub.add_parser("compare", parents=parents, help="compare methods on one scene", description="Run several methods on one scene; write metric tables and image grids.")
    input_args(p)
    p.add_argument("--methods", required=True, metavar="a,b,c", help="comma-separated method names")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (metrics.csv/json/md, grid.png, grid_zoom.png)")
    model_args(p, many=True)
    p.add_argument("--mode", choices=MODES, default="auto", help="rr (vs GT), fr (no reference) or auto")
    p.add_argument("--save-products", action="store_true", help="also write each fused product as <method>.npz")
    p.add_argument("--zoom", type=int, default=ZOOM_PX, metavar="PX", help=f"side of the centre crop of grid_zoom.png in PAN pixels (default {ZOOM_PX}; 0: no zoom grid)")
    p.add_argument("--no-clip", action="store_true", help="score raw outputs (default: products clipped to [0, 1])")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)


def run_comparison(
    scene: Scene,
    methods: list[Method],
    out_dir: Path,
    *,
    mode: str = "auto",
    stem: str = "metrics",
    grid_name: str = "grid.png",
    progress: bool = True,
    clip: bool = True,
    save_products: bool = False,
    zoom: int = 0,
) -> MetricTable:
    """Fuse ``scene`` with each method, score it, write the tables and the image grid(s).

    Writes ``out_dir/<stem>.{csv,json,md}`` and ``out_dir/<grid_name>`` (plus
    ``<grid>_zoom.png`` when ``zoom`` > 0, and ``<method>.npz`` with ``save_products``);
    returns the table. Slow methods show a progress line with the elapsed time.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pansharp_jax.data.io import save_fused
    from pansharp_jax.report import MetricTable, save_grid

    mode = pick_mode(scene, mode)
    table = MetricTable(mode, scene.name, scene.sensor.name, scene.ratio)
    products: dict[str, np.ndarray] = {}
    scores: dict[str, str] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not progress) as bar:
        what = escape(f"{scene.name} ({mode})")
        task = bar.add_task(what, total=len(methods))
        for method in methods:
            bar.update(task, description=f"{what}: fusing with {escape(method.label)}")
            t0 = time.perf_counter()
            fused = method.fuse(scene, clip=clip)
            seconds = time.perf_counter() - t0
            bar.update(task, description=f"{what}: scoring {escape(method.label)}")
            values = evaluate(fused, scene, mode)
            table.add(method.name, method.label, values, seconds)
            products[method.label] = fused
            scores[method.label] = "  ".join(f"{k} {values[k]:.3f}" for k in TITLE_SCORES[mode] if k in values)
            if save_products:
                save_fused(out_dir / f"{method.name}.npz", fused, scene)
            bar.advance(task)
    table.write(out_dir, stem)
    title = f"{scene.name}: {'reduced resolution, errors vs GT' if mode == 'rr' else 'full resolution'} ({scene.sensor.name})"
    common = {"rgb": rgb_bands(scene), "max_dn": scene.max_dn, "scores": scores}
    gt = scene.gt if mode == "rr" else None
    save_grid(out_dir / grid_name, products, lrms=scene.lrms, pan=scene.pan, gt=gt, title=title, **common)
    crop = zoom_window(scene, zoom)
    if crop is not None:
        r0, r1, c0, c1 = crop
        r = scene.ratio
        zoomed = {k: v[r0:r1, c0:c1] for k, v in products.items()}
        save_grid(
            out_dir / grid_name.replace(".png", "_zoom.png"), zoomed, lrms=scene.lrms[r0 // r : r1 // r, c0 // r : c1 // r],
            pan=scene.pan[r0:r1, c0:c1], gt=None if gt is None else gt[r0:r1, c0:c1],
            title=f"{title}, zoom rows {r0}-{r1}, cols {c0}-{c1}", **common,
        )  # fmt: skip
    return table


def zoom_window(scene: Scene, side: int) -> tuple[int, int, int, int] | None:
    """The centre crop (r0, r1, c0, c1) of ``side`` PAN pixels (ratio-aligned), or None when
    ``side`` is 0 or the scene is not larger than it."""
    h, w = scene.pan.shape[:2]
    r = scene.ratio
    side = (int(side) // r) * r
    if side <= 0 or (h <= side and w <= side):
        return None
    sh, sw = min(side, h), min(side, w)
    r0, c0 = ((h - sh) // 2 // r) * r, ((w - sw) // 2 // r) * r
    return r0, r0 + sh, c0, c0 + sw


def rgb_bands(scene: Scene) -> tuple[int, int, int]:
    """The scene's true-colour bands (the sensor's, else a guess from the band count)."""
    rgb = tuple(scene.sensor.rgb)
    if scene.nbands >= 3 and (max(rgb) >= scene.nbands or len(set(rgb)) == 1):
        rgb = (2, 1, 0) if scene.nbands <= 4 else (scene.nbands // 2, scene.nbands // 4, 0)
    if max(rgb) >= scene.nbands:
        rgb = (0, 0, 0)
    return rgb  # type: ignore[return-value]


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare methods on one scene (see module docstring)."""
    from pansharp_jax.methods import resolve_many
    from pansharp_jax.report import print_table

    if args.zoom < 0:
        raise InputError(f"--zoom must be >= 0, got {args.zoom}")
    methods = resolve_many(args.methods, weights=args.weights, ckpts=args.ckpt)
    scene = load(args)
    pick_mode(scene, args.mode)
    for m in methods:
        say_origin(m)
        m.check(scene.nbands, scene.ratio, f"scene {scene.name}")
        say_method_fit(m, scene.sensor.name, scene.ratio)
    out, created = output_dir(args.out)
    try:
        table = run_comparison(
            scene, methods, out, mode=args.mode, progress=not args.no_progress, clip=not args.no_clip,
            save_products=args.save_products, zoom=args.zoom,
        )  # fmt: skip
    except BaseException:
        if created:  # no empty compare folder left behind after an error
            shutil.rmtree(out, ignore_errors=True)
        raise
    con = console()
    print_table(table, con)
    extra = ", grid_zoom.png" if zoom_window(scene, args.zoom) else ""
    saved = f" and {len(methods)} products (<method>.npz)" if args.save_products else ""
    con.print(f"wrote metrics.csv, metrics.json, metrics.md, grid.png{extra}{saved} in {out}", markup=False)
    return 0

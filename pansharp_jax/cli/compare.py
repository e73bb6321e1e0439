"""``pansharp compare``: several methods on one scene; metric tables and image grids.

::

    pansharp compare -i scene.mat --methods exp,gsa,fusionnet,cannet \\
        --weights fusionnet=fusionnet/WV3/fusionnet.pth,cannet=cannet/cannet_wv3.pth -o report/ --save-products

Writes ``metrics.{csv,json,md}``, ``grid.png`` (scores in the panel titles) and
``grid_zoom.png`` (the same panels on a ``--zoom``-pixel crop, by default the centre),
and with ``--save-products`` each fused product as ``<method>.npz``. Products are
clipped to [0, 1] before scoring (``--no-clip`` scores the raw outputs).

Benchmark tables over many scenes: ``--input`` a folder or a glob scores every scene
(each in its own sub-folder ``<scene>/`` with the files above) and writes
``scenes.{csv,json,md}`` (one row per scene and method) and ``summary_rr.*`` /
``summary_fr.*`` (mean ± std over the scenes: CSV, JSON, Markdown, LaTeX and a PNG plot)::

    pansharp compare -i 'scenes/*.mat' --methods gsa,mtf_glp_fs --products mynet=outputs/ -o bench/

``--products NAME=PATH`` scores the products of an external network in the same table:
PATH is a product file for one scene, or for many scenes a folder holding one product per
scene named after it (``<scene>.mat`` / ``.npz`` / ``.tif``). ``--protocol NAME`` picks
the evaluation convention (:mod:`pansharp_jax.metrics.protocols`); every table names it.
"""

from __future__ import annotations

import argparse
import glob
import shutil
import time
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from pansharp_jax.cli._common import (
    MODES, FUSED_EXTS, console, evaluate, input_args, input_path, load, model_args, output_dir, pick_mode, protocol_arg,
    protocol_label, read_fused, say_method_fit, say_origin, warn,
)  # fmt: skip
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
    input_args(p, many=True)
    p.add_argument("--methods", default="", metavar="a,b,c", help="comma-separated method names (may be empty with --products)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (metrics.csv/json/md, grid.png, grid_zoom.png; for many scenes also scenes.* and summary_rr/fr.*)")
    p.add_argument("--products", action="append", default=[], metavar="NAME=PATH", help="score an external network's products: a file (one scene) or a folder with <scene>.mat/.npz/.tif per scene (repeatable)")
    protocol_arg(p)
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
    protocol: str | None = None,
    external: Mapping[str, np.ndarray] | None = None,
) -> MetricTable:
    """Fuse ``scene`` with each method, score it, write the tables and the image grid(s).

    Writes ``out_dir/<stem>.{csv,json,md}`` and ``out_dir/<grid_name>`` (plus
    ``<grid>_zoom.png`` when ``zoom`` > 0, and ``<method>.npz`` with ``save_products``);
    returns the table. Slow methods show a progress line with the elapsed time.
    ``external`` maps a name to an already fused product (H, W, C) on [0, 1] (another
    network's output), scored and shown like the methods (clipped unless ``clip`` is False).
    ``protocol``: the evaluation preset (None = the MATLAB toolbox).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pansharp_jax.data.io import save_fused
    from pansharp_jax.report import MetricTable, save_grid

    mode = pick_mode(scene, mode)
    table = MetricTable(mode, scene.name, scene.sensor.name, scene.ratio, protocol=protocol_label(scene, mode, protocol))
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
            values = evaluate(fused, scene, mode, protocol)
            table.add(method.name, method.label, values, seconds)
            products[method.label] = fused
            scores[method.label] = "  ".join(f"{k} {values[k]:.3f}" for k in TITLE_SCORES[mode] if k in values)
            if save_products:
                save_fused(out_dir / f"{method.name}.npz", fused, scene)
            bar.advance(task)
        for name, product in (external or {}).items():
            fused = np.clip(product, 0.0, 1.0) if clip else np.asarray(product)
            values = evaluate(fused, scene, mode, protocol)
            table.add(name, name, values, None)
            products[name] = fused
            scores[name] = "  ".join(f"{k} {values[k]:.3f}" for k in TITLE_SCORES[mode] if k in values)
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


def parse_products(specs: list[str]) -> dict[str, Path]:
    """``--products NAME=PATH`` values (comma-separated or repeated) -> {name: path}."""
    out: dict[str, Path] = {}
    for spec in specs:
        for item in filter(None, (x.strip() for x in spec.split(","))):
            name, sep, path = item.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise InputError(f"--products takes NAME=PATH, got {item!r}")
            if name.strip() in out:
                raise InputError(f"--products names {name.strip()!r} twice")
            out[name.strip()] = input_path(path.strip())
    return out


def product_for(folder_or_file: Path, stem: str) -> Path | None:
    """The product of scene ``stem``: the file itself, else ``<folder>/<stem>.<mat|npz|tif|tiff>``,
    else the only ``<folder>/<stem>_<anything>.<ext>`` (as ``pansharp fuse`` names catalogue
    products, ``<scene>_<method>.tif``). InputError when several candidates match."""
    if folder_or_file.is_file():
        return folder_or_file
    hits = [folder_or_file / f"{stem}{ext}" for ext in FUSED_EXTS if (folder_or_file / f"{stem}{ext}").is_file()]
    if not hits:
        hits = sorted(p for p in folder_or_file.glob(f"{glob.escape(stem)}_*") if p.suffix.lower() in FUSED_EXTS and p.is_file())
    if len(hits) > 1:
        raise InputError(f"several products for scene {stem} in {folder_or_file}: {', '.join(p.name for p in hits)}; keep one")
    return hits[0] if hits else None


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare methods on one scene, or on every scene of a folder or glob (see module docstring)."""
    from pansharp_jax.cli.fuse import _is_catalogue
    from pansharp_jax.methods import resolve_many

    if args.zoom < 0:
        raise InputError(f"--zoom must be >= 0, got {args.zoom}")
    methods = resolve_many(args.methods, weights=args.weights, ckpts=args.ckpt) if args.methods.strip() else []
    products = parse_products(args.products)
    if not methods and not products:
        raise InputError("nothing to compare: give --methods and/or --products")
    if _is_catalogue(args.input):
        return _compare_catalogue(args, methods, products)
    for name, path in products.items():
        if not path.is_file():
            raise InputError(f"--products {name}={path}: one scene takes a product file, not a folder")
    return _compare_one(args, methods, products)


def _compare_one(args: argparse.Namespace, methods: list[Method], products: dict[str, Path]) -> int:
    from pansharp_jax.report import print_table

    scene = load(args)
    pick_mode(scene, args.mode)
    for m in methods:
        say_origin(m)
        m.check(scene.nbands, scene.ratio, f"scene {scene.name}")
        say_method_fit(m, scene.sensor.name, scene.ratio)
    external = {name: read_fused(path, scene) for name, path in products.items()}
    out, created = output_dir(args.out)
    try:
        table = run_comparison(
            scene, methods, out, mode=args.mode, progress=not args.no_progress, clip=not args.no_clip,
            save_products=args.save_products, zoom=args.zoom, protocol=args.protocol, external=external,
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


def _compare_catalogue(args: argparse.Namespace, methods: list[Method], products: dict[str, Path]) -> int:
    """Every scene of a folder or glob: a sub-folder per scene, then scenes.* and summary_<mode>.*."""
    import json

    from pansharp_jax.cli.fuse import _stem, catalogue_scenes
    from pansharp_jax.report.summary import scenes_csv, summarise

    if args.pan is not None:
        raise InputError("--pan is for one GeoTIFF scene; a folder pairs NAME_ms.tif with NAME_pan.tif itself")
    scenes = catalogue_scenes(args.input)
    for m in methods:
        say_origin(m)
    out, created = output_dir(args.out)
    tables = []
    try:
        for i, (path, pan) in enumerate(scenes, 1):
            stem = _stem(path)
            args.pan = pan
            scene = load(args, path)
            for m in methods:
                m.check(scene.nbands, scene.ratio, f"scene {scene.name}")
            external = {}
            for name, folder in products.items():
                found = product_for(folder, stem)
                if found is None:
                    warn(f"--products {name}: no product for scene {stem} in {folder} (expected {stem}.mat/.npz/.tif); left out of its mean")
                else:
                    external[name] = read_fused(found, scene)
            console().print(f"[{i}/{len(scenes)}] {stem}", markup=False)
            sub = out / stem
            sub.mkdir(exist_ok=True)
            tables.append(
                run_comparison(
                    scene, methods, sub, mode=args.mode, progress=not args.no_progress, clip=not args.no_clip,
                    save_products=args.save_products, zoom=args.zoom, protocol=args.protocol, external=external,
                )  # fmt: skip
            )
        (out / "scenes.csv").write_text(scenes_csv(tables), encoding="utf-8")
        (out / "scenes.json").write_text(
            json.dumps({"protocol": args.protocol, "scenes": [t.to_dict() for t in tables]}, indent=2) + "\n", encoding="utf-8"
        )
        (out / "scenes.md").write_text("\n".join(t.to_markdown() for t in tables), encoding="utf-8")
        summaries = summarise(tables)
        for mode, summary in summaries.items():
            summary.write(out, f"summary_{mode}")
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    con = console()
    for summary in summaries.values():
        con.print(summary.to_markdown(), markup=False)
    names = ", ".join(f"summary_{m}.csv/json/md/tex/png" for m in summaries)
    con.print(f"wrote scenes.csv, scenes.json, scenes.md, {names} and one folder per scene in {out}", markup=False)
    return 0

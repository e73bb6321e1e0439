"""``pansharp simulate``: your own full-resolution scenes as a Wald-reduced training set.

::

    pansharp simulate -i scenes/ --sensor WV3 -o my_wv3/                  # every scene of a folder
    pansharp simulate -i ms.tif --pan pan.tif --sensor spot6.yaml -o my_spot6/ --patch 64 --stride 32
    pansharp simulate -i "fr/*.mat" -o my_set/ --split 0.8,0.1,0.1 --seed 1 --degrade patch

Writes ``train.h5``, ``valid.h5``, ``test.h5`` (PanCollection layout: ``gt``, ``ms``,
``lms``, ``pan``, N x C x H x W, float DN) and ``data_card.json`` into ``--out`` (see
:mod:`pansharp_jax.data.simulate` for the degradation, the splits and the card), then
prints the ``pansharp train`` command that trains on them. An existing set is replaced
only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from pansharp_jax.cli._common import console, input_args, input_path, warn
from pansharp_jax.errors import InputError

DEFAULT_CONFIG = "configs/fusionnet_wv3.py:smoke"
DEFAULT_BATCH = 32  # configs/default.py


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``simulate`` on the sub-command parser ``sub``."""
    p = sub.add_parser(
        "simulate", parents=parents, help="make training/validation/test sets from your own full-resolution scenes",
        description="Wald-reduce full-resolution scenes into train.h5, valid.h5, test.h5 (PanCollection layout) "
        "and data_card.json, ready for 'pansharp train'.",
    )  # fmt: skip
    input_args(p, many=True)
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--patch", type=int, default=64, help="GT patch side in MS pixels = reduced PAN patch side (multiple of the ratio; default: 64)")
    p.add_argument("--stride", type=int, default=32, help="patch stride in MS pixels (multiple of the ratio; default: 32)")
    p.add_argument("--split", default="0.9,0.05,0.05", metavar="TRAIN,VALID,TEST", help="fractions of the patches, summing to 1 (default: 0.9,0.05,0.05)")
    p.add_argument("--seed", type=int, default=0, help="held-out sides, allocation and sample order (default: 0)")
    p.add_argument("--degrade", choices=("scene", "patch"), default="scene", help="degrade each whole scene once, then cut patches (scene, default), or each patch on its own (patch)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="stored data type (default: float64)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing set in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)


def scene_files(args: argparse.Namespace) -> list[Any]:
    """The scenes of ``--input``: one file (with ``--pan`` for a GeoTIFF), a folder or a glob."""
    from pansharp_jax.cli.fuse import catalogue_scenes
    from pansharp_jax.data.simulate import SceneFile

    spec = str(args.input)
    is_glob = any(ch in spec for ch in "*?[")
    if is_glob or input_path(spec).is_dir():
        if args.pan:
            raise InputError("--pan is for one GeoTIFF scene; in a folder, pairs are NAME_ms.tif + NAME_pan.tif")
        return [SceneFile(Path(s), Path(p) if p else None) for s, p in catalogue_scenes(spec)]
    return [SceneFile(input_path(spec), input_path(args.pan) if args.pan else None)]


def train_command(
    overrides: dict[str, Any], n_train: int, config: str = DEFAULT_CONFIG, workdir: str = "runs/simulated"
) -> str:
    """The ``pansharp train`` command line for a simulated set (``config.data`` overrides).

    With fewer training patches than the default batch of 32, the batch is lowered to the
    largest power of two that fits (the trainer needs one whole batch).
    """
    parts = ["pansharp", "train", "--config", config, "--workdir", workdir]
    for key, value in overrides.items():
        if key == "data.val" and not value:
            continue
        parts.append(f"--config.{key}={value}")
    if 0 < n_train < DEFAULT_BATCH:
        parts.append(f"--config.batch_size={2 ** (n_train.bit_length() - 1)}")
    return " ".join(shlex.quote(p) for p in parts)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate the sets; print the counts, the card and the training command."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pansharp_jax.data.sensors import get_sensor
    from pansharp_jax.data.simulate import check_outputs, parse_split, simulate

    parse_split(args.split)  # usage mistakes first, before reading anything
    check_outputs(args.out, overwrite=args.overwrite)
    if args.sensor is not None:
        get_sensor(args.sensor)
    scenes = scene_files(args)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=args.no_progress) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                what = "checking scenes" if stage == "check" else "degrading and writing patches"
                tasks[stage] = bar.add_task(what, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        report = simulate(
            scenes, args.out, sensor=args.sensor, bits=args.bits, ratio=args.ratio, keys=args.keys, index=args.index,
            patch=args.patch, stride=args.stride, split=args.split, seed=args.seed, degrade=args.degrade,
            dtype=args.dtype, overwrite=args.overwrite, progress=progress, warn=warn,
        )  # fmt: skip
    card = report.card
    counts = ", ".join(f"{name} {n}" for name, n in card["counts"].items())
    out = console()
    out.print(
        f"simulated {len(scenes)} scene(s) of {card['sensor']['name']} ({card['bands']} bands, {card['bits']} bits, "
        f"ratio {card['ratio']}) in {report.seconds:.1f} s: {counts} patches of {card['patch']}x{card['patch']} "
        f"(degrade {card['degrade']}, {card['dropped_overlap']} dropped where splits would overlap) -> {report.out_dir}",
        markup=False,
        soft_wrap=True,
    )
    out.print(f"data card: {report.out_dir / 'data_card.json'}", markup=False)
    out.print("train on it (drop ':smoke' for the full recipe):", markup=False)
    out.print(train_command(report.train_overrides, card["counts"]["train"]), markup=False, soft_wrap=True)
    return 0

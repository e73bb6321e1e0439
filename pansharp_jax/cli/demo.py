"""``pansharp demo``: the classical baselines and a FusionNet trained on the spot, on the
embedded synthetic demo scene, at reduced and full resolution (see :func:`cmd_demo`)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pansharp_jax.cli._common import console, output_dir
from pansharp_jax.cli.compare import run_comparison
from pansharp_jax.errors import InputError
from pansharp_jax.methods import ClassicalSource, Method, normalise, resolve, resolve_many

if TYPE_CHECKING:
    from pansharp_jax.data.scene import Scene


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``demo`` on the sub-command parser ``sub``."""
    p = sub.add_parser("demo", parents=parents, help="run the classical baselines and a quickly trained FusionNet on the embedded demo scene", description="Run the classical baselines, and a FusionNet trained on the spot on the full-resolution scene only, on the embedded synthetic demo scene at reduced and full resolution.")
    p.add_argument("--out", "-o", default="demo_out", metavar="DIR", help="output folder (default: demo_out)")
    p.add_argument("--methods", metavar="a,b,c", help="comma-separated subset of methods; fusionnet = the demo-trained network (default: all classical + fusionnet)")
    p.add_argument("--train-steps", type=int, default=DEMO_TRAIN_STEPS, metavar="N", help=f"FusionNet training steps (default: {DEMO_TRAIN_STEPS}, about a minute on 2 CPU cores; 0 skips it)")
    p.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


# The demo's FusionNet: trained on the full-resolution demo scene only (see cmd_demo).
DEMO_TRAIN_STEPS = 600
DEMO_RUN = "fusionnet_demo"


def _dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(0, 1))
    return np.ascontiguousarray(a[:, ::-1] if flip else a)


def demo_training_data(scene: Scene, workdir: Path, *, patch: int = 32, stride: int = 4) -> tuple[Path, Path, int, int]:
    """Training and validation patches for the demo's FusionNet, from a scene WITHOUT its GT.

    ``scene`` (the full-resolution demo scene) is Wald-reduced by
    :func:`pansharp_jax.data.pipeline.wald_patch_sources`: its MS becomes the reference, the
    reduced LRMS and PAN the inputs. The right quarter is held out (validation tiles of 16 x
    16); the rest gives ``patch`` x ``patch`` patches (reduced PAN grid) every ``stride`` px.
    Augmentation: the scene is rotated by 0/90/180/270 degrees and mirrored BEFORE the
    reduction (the held-out side follows the same ground), so every sample keeps the
    toolbox's decimation phase. Writes ``workdir/train.npz`` and ``workdir/val.npz``
    (``lrms``, ``pan``, ``lms``, ``gt``, NHWC float32 on [0, 1]); returns their paths and sizes.
    """
    from pansharp_jax.data import pipeline

    r = int(scene.ratio)
    h, w = scene.lrms.shape[:2]
    h, w = h - h % r, w - w % r
    _, hold = pipeline.split_holdout(h, w, "right", 0.25, multiple=r)
    marker = np.zeros(scene.lrms.shape[:2], bool)
    marker[hold.r0 : hold.r1, hold.c0 : hold.c1] = True
    parts: list[dict[str, np.ndarray]] = []
    val: dict[str, np.ndarray] = {}
    for k in range(4):
        for flip in (False, True):
            m = _dihedral(marker, k, flip)
            edges = (("right", m[:, -1]), ("left", m[:, 0]), ("top", m[0]), ("bottom", m[-1]))
            side = next(sd for sd, edge in edges if edge.all())
            lrms, pan = _dihedral(scene.lrms, k, flip), _dihedral(scene.pan, k, flip)
            view = dataclasses.replace(scene, lrms=lrms, pan=pan, gt=None)
            tr, va = pipeline.wald_patch_sources(
                view, patch=patch, stride=stride, holdout_side=side, holdout_fraction=0.25, val_patch=16
            )
            held = np.zeros_like(m)
            reg = va.region  # type: ignore[attr-defined]
            held[reg.r0 : reg.r1, reg.c0 : reg.c1] = True
            if not np.array_equal(held, m):  # the same ground must be held out in every view
                raise RuntimeError(f"demo hold-out differs in view rot{90 * k}{' mirrored' if flip else ''}")
            parts.append(tr.arrays)
            if k == 0 and not flip:
                val = va.arrays
    workdir.mkdir(parents=True, exist_ok=True)
    train = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    np.savez(workdir / "train.npz", **train)
    np.savez(workdir / "val.npz", **val)
    return workdir / "train.npz", workdir / "val.npz", len(train["lrms"]), len(val["lrms"])


def demo_train_config(train_file: Path, val_file: Path, steps: int, *, console: bool = False) -> Any:
    """The training config of the demo's FusionNet (``pansharp_jax.train.loop.train`` fields).

    Data: the ``.npz`` patches of :func:`demo_training_data` (QB, ratio 4). Model: FusionNet at
    its published size (32 channels, 4 residual blocks), 4 bands. Adam, L1 loss, batch 8,
    learning rate 1e-3 with cosine decay to 1e-4; validation every 100 steps, the best
    checkpoint by validation ERGAS kept.
    """
    import ml_collections

    from pansharp_jax.models import registry

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = registry.default_config("fusionnet")
    c.model.bands = 4
    c.data = ml_collections.ConfigDict(
        {"kind": "arrays", "root": "", "train": str(Path(train_file).absolute()), "val": str(Path(val_file).absolute()),
         "sensor": "QB", "ratio": 4, "scale": 2047.0, "seed": -1}
    )  # fmt: skip
    c.optim = ml_collections.ConfigDict(
        {"name": "adam", "lr": 1e-3, "schedule": "cosine", "warmup_steps": 0, "min_lr_ratio": 0.1, "grad_clip": 0.0}
    )
    c.loss = "l1"
    c.steps = int(steps)
    c.batch_size = 8
    c.log_every = 10
    c.eval_every = 100
    c.eval = ml_collections.ConfigDict({"batch_size": 4, "max_examples": 0, "block": 16, "cut": 0})
    c.checkpoint = ml_collections.ConfigDict(
        {"every": 0, "keep": 1, "best_metric": "ERGAS", "best_mode": "min", "async_save": False}
    )
    c.logging = ml_collections.ConfigDict(
        {"enabled": False, "project": "pansharp_jax", "group": "demo", "tags": ("demo",), "name": "", "entity": "",
         "images": 0, "console": bool(console)}
    )  # fmt: skip
    return c


def _train_demo_fusionnet(out: Path, scene: Scene, steps: int, *, progress: bool) -> tuple[Method, str]:
    """Train the demo's FusionNet into ``out/fusionnet_demo``; (method, one-line report)."""
    import shutil

    from pansharp_jax.train.loop import train

    workdir = out / DEMO_RUN
    if workdir.exists():  # a previous demo's run: the demo's own output, replaced
        if not (workdir / "train.npz").is_file() and any(workdir.iterdir()):
            raise InputError(f"{workdir} exists and is not a demo training run: move it away")
        shutil.rmtree(workdir)
    t0 = time.perf_counter()
    train_file, val_file, n_train, n_val = demo_training_data(scene, workdir)
    result = train(demo_train_config(train_file, val_file, steps, console=progress), workdir)
    seconds = time.perf_counter() - t0
    method = dataclasses.replace(resolve("fusionnet", ckpt=str(workdir)), label="FusionNet (demo-trained)")
    best = f"; best validation ERGAS {result.best[1]:.3f} at step {result.best[0]}" if result.best else ""
    return method, (
        f"FusionNet: {steps} steps on {n_train} Wald-reduced patches of {scene.name} (no GT; {n_val} held-out tiles) "
        f"in {seconds:.1f} s{best} -> {workdir}"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """The classical baselines, and a FusionNet trained on the spot, on the embedded demo scene.

    Training is fair to the reduced-resolution (rr) comparison: the network never sees the rr
    GT. It trains only on the full-resolution scene (LRMS 64 x 64, PAN 256 x 256, no GT),
    Wald-reduced once more (LRMS 16 x 16, PAN 64 x 64, with the 64 x 64 LRMS as reference) and
    cut into 32 x 32 patches in 8 rotated/mirrored views (:func:`demo_training_data`), the
    scale-invariance assumption of training on one real scene; the right quarter is held out
    to pick the checkpoint (validation ERGAS). The rr scene has that same LRMS and PAN as its
    inputs; its GT (256 x 256) is used only for scoring. The run is a normal training workdir,
    ``<out>/fusionnet_demo`` (``pansharp fuse --method fusionnet --ckpt`` takes it).
    ``--train-steps 0`` skips the network.
    """
    from pansharp_jax.data.demo import demo_scene, write_demo_scene
    from pansharp_jax.report import print_table

    t0 = time.perf_counter()
    steps = int(args.train_steps)
    if steps < 0:
        raise InputError(f"--train-steps must be >= 0, got {steps}")
    names = [n.strip() for n in args.methods.split(",") if n.strip()] if args.methods else ClassicalSource().names()
    if not names:
        raise InputError("no methods given: use --methods a,b,c")
    if args.methods is None and steps > 0:
        names.append("fusionnet")
    n_net = sum(normalise(n) == "fusionnet" for n in names)
    if n_net > 1:
        raise InputError("method listed twice: fusionnet")
    want_net = n_net == 1
    if want_net and steps == 0:
        raise InputError("fusionnet in the demo is trained on the spot: give --train-steps > 0 or leave it out")
    others = [n for n in names if normalise(n) != "fusionnet"]
    fixed = resolve_many(",".join(others)) if others else []
    out = output_dir(args.out)[0]
    con = console()
    con.print(
        f"demo: synthetic QuickBird-like scene (seed {args.seed}), {len(names)} methods, "
        "reduced resolution (Wald protocol, with GT) then full resolution (QNR/HQNR)"
    )
    for mode in ("rr", "fr"):
        write_demo_scene(out / f"demo_{mode}.npz", mode, seed=args.seed)
    methods = list(fixed)
    if want_net:
        net, report = _train_demo_fusionnet(out, demo_scene("fr", seed=args.seed), steps, progress=not args.no_progress)
        con.print(report, markup=False)
        it = iter(fixed)
        methods = [net if normalise(n) == "fusionnet" else next(it) for n in names]
    for mode in ("rr", "fr"):
        scene = demo_scene(mode, seed=args.seed)
        table = run_comparison(
            scene, methods, out, mode=mode, stem=f"{mode}_metrics", grid_name=f"{mode}_grid.png",
            progress=not args.no_progress,
        )  # fmt: skip
        print_table(table, con)
    extra = f", {DEMO_RUN}/" if want_net else ""
    con.print(
        f"wrote {out}/: rr_metrics.{{csv,json,md}}, fr_metrics.{{csv,json,md}}, rr_grid.png, fr_grid.png, "
        f"demo_rr.npz, demo_fr.npz{extra} in {time.perf_counter() - t0:.1f} s",
        markup=False,
    )
    return 0

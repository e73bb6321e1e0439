"""The ``pansharp`` command line: ``fuse``, ``eval``, ``compare``, ``train`` and ``demo``.

::

    pansharp fuse    --method gsa --input scene.mat --out fused.tif
    pansharp fuse    --method fusionnet --weights fusionnet/WV3/fusionnet.pth --input scene.mat --out fused.tif
    pansharp fuse    --method fusionnet --ckpt runs/fnet --input scene.mat --out fused.tif
    pansharp eval    --fused fused.tif --input scene.mat [--json metrics.json]
    pansharp compare --input scene.mat --methods exp,gsa,mtf_glp_hpm --out report/
    pansharp train   --config configs/fusionnet_wv3.py --workdir runs/fnet [--resume] [--no-wandb] [--config.optim.lr=1e-3]
    pansharp demo    --out demo_out/ [--train-steps N]

Scenes are read with :func:`pansharp_jax.data.io.load_scene` (``--keys``, ``--sensor``,
``--pan`` for GeoTIFF pairs), products written with :func:`~pansharp_jax.data.io.save_fused`
(``.tif`` DN GeoTIFF, ``.mat`` ``I_F`` in DN, ``.npz`` ``fused`` (H, W, C) on [0, 1]).
Evaluation mode ``auto`` is reduced resolution (Q2n, Q_avg, SAM, ERGAS, SCC, PSNR, SSIM vs
the GT) when the scene has a GT, full resolution (D_lambda, D_lambda_K, D_S, QNR, HQNR)
otherwise; ``fr`` on a scene with GT scores the same product without using the GT.

Methods come from method sources (:class:`MethodSource`); :func:`resolve_method` asks each
in turn. The classical baselines (:class:`ClassicalSource`) and the learned models of
:mod:`pansharp_jax.models.registry` (:class:`ModelSource`) are built in; more plug in with
:func:`register_method_source` (method options such as ``weights`` are passed through). A
learned method runs with ``--weights FILE.pth`` (the authors' released PyTorch weights,
imported by :func:`pansharp_jax.models.convert.import_weights`) or ``--ckpt WORKDIR`` (the
best checkpoint of a ``pansharp train`` run, else its latest, with the model config saved
with it); the networks are fully convolutional, so scenes of any size run whole.

``pansharp train`` is ``python -m pansharp_jax.train`` (same options, same config files,
``--config.KEY=VALUE`` overrides; an unknown key is a one-line error).

Errors: bad input (:class:`~pansharp_jax.errors.InputError`: missing file or key, wrong
band count, sizes not a multiple of the ratio, NaN/Inf, values outside the DN range,
corrupt file, unknown method or sensor, bad output extension) and command-line mistakes
print ONE line on stderr, ``pansharp: error: ...``, and give exit code 2. Any other
exception prints ``pansharp: internal error: <Type>: <msg> (rerun with --debug for the
traceback)`` and gives exit code 1; ``--debug`` re-raises it instead.

:func:`main` RETURNS the exit code (0, 1 or 2) and never raises ``SystemExit`` (``--help``
and ``--version`` return 0); the console script passes it to ``sys.exit``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pansharp_jax import __version__
from pansharp_jax.errors import InputError
from pansharp_jax.runtime import use_low_memory_cpu_scheduler

if TYPE_CHECKING:  # imported lazily at run time: `pansharp --version` does not load JAX
    from pansharp_jax.data.scene import Scene
    from pansharp_jax.report.tables import MetricTable

FUSED_EXTS = (".tif", ".tiff", ".mat", ".npz")
MODES = ("auto", "rr", "fr")

__all__ = [
    "main",
    "build_parser",
    "Method",
    "MethodSource",
    "ClassicalSource",
    "ModelSource",
    "resolve_method",
    "register_method_source",
    "known_methods",
    "run_comparison",
]


# --------------------------------------------------------------------------------------
# Method resolution: a list of sources, asked in order
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Method:
    """A fusion method ready to run on a scene.

    Attributes:
      name: canonical registry name (``"mtf_glp_hpm"``).
      label: display name for tables and grids (the toolbox's, ``"MTF-GLP-HPM"``).
      run: ``run(scene) -> fused``, (H, W, C) on the [0, 1] scale (not clipped).
      source: which source provided it (``"classical"``, ...).
    """

    name: str
    label: str
    run: Callable[[Scene], np.ndarray]
    source: str = "classical"


class MethodSource(Protocol):
    """Where methods come from: the classical baselines, a registry of learned models...

    A source may also have ``options``, the method options it uses (``("weights", "ckpt")``):
    in a list of methods (``compare --methods``) only its methods get those options.
    """

    name: str

    def names(self) -> list[str]:
        """Canonical method names this source provides (for listings and error messages)."""
        ...

    def resolve(self, name: str, opts: Mapping[str, Any]) -> Method | None:
        """The method called ``name`` (already normalised), or None if not from this source.

        ``opts`` holds method options (``weights``, ``ckpt``...); a source raises InputError
        for options it cannot use.
        """
        ...


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


class ClassicalSource:
    """The classical baselines of :mod:`pansharp_jax.classical` (``fuse(None, lrms, pan, ...)``)."""

    name = "classical"

    def names(self) -> list[str]:
        from pansharp_jax import classical

        return list(classical.METHODS)

    def resolve(self, name: str, opts: Mapping[str, Any]) -> Method | None:
        from pansharp_jax import classical

        by_toolbox = {_normalise(v): k for k, v in getattr(classical, "TOOLBOX_NAMES", {}).items()}
        key = name if name in classical.METHODS else by_toolbox.get(name)
        if key is None or key not in classical.METHODS:
            return None
        used = sorted(k for k, v in opts.items() if v is not None)
        if used:
            raise InputError(f"method '{key}' is classical and takes no {', '.join('--' + u for u in used)}")
        label = getattr(classical, "TOOLBOX_NAMES", {}).get(key, key.upper())

        def run(scene: Scene) -> np.ndarray:
            import jax

            fn = classical.METHODS[key]  # looked up at call time (tests patch it)
            with jax.enable_x64(True):  # classical methods are cheap: run them toolbox-exact
                out = fn(None, scene.lrms, scene.pan, sensor=scene.sensor.name, ratio=scene.ratio)
                return np.asarray(out, dtype=np.float64)

        return Method(key, label, run, self.name)


def _model_label(name: str) -> str:
    """Display name of a registered model: the start of its registry description (``FusionNet``)."""
    from pansharp_jax.models import registry

    desc = registry.get(name).description
    return desc.split(" (")[0].strip() if desc else name


class ModelSource:
    """The learned models of :mod:`pansharp_jax.models.registry`.

    Options: ``weights`` (a released PyTorch ``.pth``, imported with
    :func:`~pansharp_jax.models.convert.import_weights`) or ``ckpt`` (a training workdir: its
    best checkpoint by the run's ``checkpoint.best_metric``, else the latest, with the model
    config saved in it). One of the two is required. The scene's band count must be the
    model's; the output is not clipped (as for the classical methods).
    """

    name = "model"
    options = ("weights", "ckpt")

    def names(self) -> list[str]:
        from pansharp_jax.models import registry

        return registry.names()

    def resolve(self, name: str, opts: Mapping[str, Any]) -> Method | None:
        if name not in self.names():
            return None
        used = {k: v for k, v in opts.items() if v is not None}
        other = sorted(k for k in used if k not in self.options)
        if other:
            raise InputError(f"method '{name}' takes no {', '.join('--' + o for o in other)}")
        label = _model_label(name)
        weights, ckpt = used.get("weights"), used.get("ckpt")
        if weights is not None and ckpt is not None:
            raise InputError(f"give --weights or --ckpt for {name}, not both")
        if weights is None and ckpt is None:
            raise InputError(
                f"method '{name}' is a learned model: give --weights FILE.pth (released weights) "
                "or --ckpt WORKDIR (a 'pansharp train' run)"
            )
        if weights is not None:
            from pansharp_jax.models import convert

            path = Path(weights)
            if not path.is_file():
                raise InputError(f"weights file not found: {path}")
            if name not in convert.IMPORTABLE:
                raise InputError(f"no importer for released {label} weights ({path.name}); use --ckpt WORKDIR")
            params, cfg = convert.import_weights(name, path)
            origin = f"weights {path.name}"
        else:
            from pansharp_jax.train.restore import restore_params

            restored = restore_params(ckpt)
            params, cfg = restored.params, restored.model_config
            if _normalise(str(cfg.name)) != name:
                raise InputError(f"--ckpt {ckpt} holds a {cfg.name} model, not {name}")
            origin = f"checkpoint {restored.which} step {restored.step}"
        return Method(name, label, _model_runner(label, origin, params, cfg), self.name)


def _model_runner(label: str, origin: str, params: Any, cfg: Any) -> Callable[[Scene], np.ndarray]:
    bands = int(cfg.bands)
    model_ratio = cfg.get("ratio") if hasattr(cfg, "get") else None

    def run(scene: Scene) -> np.ndarray:
        from pansharp_jax.models import fuse

        if scene.nbands != bands:
            raise InputError(
                f"{label} ({origin}) expects an MS with {bands} bands, but scene {scene.name} has {scene.nbands}: "
                "use weights trained for this sensor"
            )
        if model_ratio is not None and int(model_ratio) != int(scene.ratio):
            raise InputError(f"{label} ({origin}) is built for ratio {model_ratio}, but scene {scene.name} has ratio {scene.ratio}")
        out = fuse(params, np.asarray(scene.lrms, np.float32), np.asarray(scene.pan, np.float32), model_config=cfg)
        return np.asarray(out, dtype=np.float64)

    return run


_SOURCES: list[MethodSource] = [ClassicalSource(), ModelSource()]


def register_method_source(source: MethodSource, *, first: bool = False) -> None:
    """Add a method source (e.g. learned models with ``weights``/``ckpt`` options)."""
    if first:
        _SOURCES.insert(0, source)
    else:
        _SOURCES.append(source)


def known_methods() -> list[str]:
    """Every method name of every registered source, in source order."""
    out: list[str] = []
    for src in _SOURCES:
        out += [n for n in src.names() if n not in out]
    return out


def resolve_method(name: str, **opts: Any) -> Method:
    """The method called ``name`` (case-insensitive; ``-`` and ``_`` alike; toolbox names work).

    Args:
      name: ``"gsa"``, ``"MTF-GLP-HPM"``, ...
      **opts: method options for sources that take them (``weights=...``); None values
        count as not given.

    Raises:
      InputError: unknown method (the message lists the known ones), or options the
        method cannot use.
    """
    key = _normalise(name)
    for src in _SOURCES:
        method = src.resolve(key, opts)
        if method is not None:
            return method
    raise InputError(f"unknown method '{name}'; known: {', '.join(known_methods())}")


def _resolve_with(name: str, opts: Mapping[str, Any]) -> Method:
    """Like :func:`resolve_method`, but each source only gets the options it declares
    (its ``options`` attribute; none when it has none)."""
    key = _normalise(name)
    for src in _SOURCES:
        mine = {k: v for k, v in opts.items() if v is not None and k in getattr(src, "options", ())}
        method = src.resolve(key, mine)
        if method is not None:
            return method
    raise InputError(f"unknown method '{name}'; known: {', '.join(known_methods())}")


def _resolve_list(spec: str | None, opts: Mapping[str, Any] | None = None) -> list[Method]:
    """The methods of a comma-separated list (None: every classical method); ``opts``
    (``weights``, ``ckpt``) go to the one learned method of the list."""
    names = [n for n in (spec or "").split(",") if n.strip()] if spec else ClassicalSource().names()
    if not names:
        raise InputError("no methods given: use --methods a,b,c")
    opts = {k: v for k, v in (opts or {}).items() if v is not None}
    if opts:  # which listed methods would take them: exactly one
        takes = [src for src in _SOURCES if set(opts) & set(getattr(src, "options", ()))]
        takers = [_normalise(n) for n in names if any(_normalise(n) in src.names() for src in takes)]
        flags = ", ".join(f"--{k}" for k in opts)
        if not takers:
            raise InputError(f"{flags} given, but no method in the list is a learned model")
        if len(takers) > 1:
            raise InputError(f"{flags} apply to one learned method, but the list has {len(takers)}: {', '.join(takers)}")
    methods = [_resolve_with(n, opts) for n in names]
    seen: set[str] = set()
    dups = [m.name for m in methods if m.name in seen or seen.add(m.name)]  # type: ignore[func-returns-value]
    if dups:
        raise InputError(f"method listed twice: {', '.join(dups)}")
    return methods


# --------------------------------------------------------------------------------------
# Running and scoring
# --------------------------------------------------------------------------------------
def _fuse(method: Method, scene: Scene) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    fused = np.asarray(method.run(scene), dtype=np.float64)
    seconds = time.perf_counter() - t0
    if fused.ndim == 4 and fused.shape[0] == 1:
        fused = fused[0]
    expected = (*scene.pan.shape[:2], scene.nbands)
    if fused.shape != expected:
        raise RuntimeError(f"method {method.name} returned shape {fused.shape}, expected {expected}")
    return fused, seconds


def _pick_mode(scene: Scene, mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"unknown mode '{mode}': use rr, fr or auto")
    if mode == "auto":
        return "rr" if scene.has_gt else "fr"
    if mode == "rr" and not scene.has_gt:
        raise InputError(f"mode rr needs a ground truth, and {scene.name} has none: use --mode fr")
    return mode


def _evaluate(fused: np.ndarray, scene: Scene, mode: str) -> dict[str, float]:
    from pansharp_jax import metrics

    if mode == "rr":
        out = metrics.evaluate_reduced(fused, scene.gt, ratio=scene.ratio, max_dn=scene.max_dn)
    else:
        out = metrics.evaluate_full(fused, scene.lrms, scene.pan, sensor=scene.sensor, ratio=scene.ratio, max_dn=scene.max_dn)
    return {k: float(v) for k, v in out.items()}


def run_comparison(
    scene: Scene,
    methods: Sequence[Method],
    out_dir: Path,
    *,
    mode: str = "auto",
    stem: str = "metrics",
    grid_name: str = "grid.png",
    progress: bool = True,
) -> MetricTable:
    """Fuse ``scene`` with each method, score it, write the tables and the image grid.

    Writes ``out_dir/<stem>.{csv,json,md}`` and ``out_dir/<grid_name>``; returns the table.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pansharp_jax.report import MetricTable, save_grid

    mode = _pick_mode(scene, mode)
    table = MetricTable(mode, scene.name, scene.sensor.name, scene.ratio)
    products: dict[str, np.ndarray] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not progress) as bar:
        what = escape(f"{scene.name} ({mode})")
        task = bar.add_task(what, total=len(methods))
        for method in methods:
            bar.update(task, description=f"{what} {escape(method.label)}")
            fused, seconds = _fuse(method, scene)
            table.add(method.name, method.label, _evaluate(fused, scene, mode), seconds)
            products[method.label] = fused
            bar.advance(task)
    table.write(out_dir, stem)
    title = f"{scene.name}: {'reduced resolution, errors vs GT' if mode == 'rr' else 'full resolution'} ({scene.sensor.name})"
    save_grid(
        out_dir / grid_name, products, lrms=scene.lrms, pan=scene.pan, rgb=_rgb(scene),
        gt=scene.gt if mode == "rr" else None, max_dn=scene.max_dn, title=title,
    )  # fmt: skip
    return table


def _rgb(scene: Scene) -> tuple[int, int, int]:
    rgb = tuple(scene.sensor.rgb)
    if scene.nbands >= 3 and (max(rgb) >= scene.nbands or len(set(rgb)) == 1):
        rgb = (2, 1, 0) if scene.nbands <= 4 else (scene.nbands // 2, scene.nbands // 4, 0)
    if max(rgb) >= scene.nbands:
        rgb = (0, 0, 0)
    return rgb  # type: ignore[return-value]


# --------------------------------------------------------------------------------------
# Reading a fused product back
# --------------------------------------------------------------------------------------
def read_fused(path: str | Path, scene: Scene) -> np.ndarray:
    """A fused product written by ``save_fused`` (or the toolbox) as (H, W, C) on [0, 1].

    Variables: ``fused`` (on [0, 1], as ``save_fused`` writes .npz), ``I_F`` (DN, as the
    toolbox and ``save_fused`` write .mat), else the only PAN-sized 3-D variable; GeoTIFF
    bands. Integer data are DN; other data are DN when their largest value is > 1.5, else
    already on [0, 1]. DN are divided by ``scene.max_dn``.
    """
    from pansharp_jax.data.io import read_geotiff
    from pansharp_jax.data.io_mat import open_array_file, sniff_format
    from pansharp_jax.data.scene import check_finite

    path = Path(path)
    fmt = sniff_format(path)
    scale = "auto"
    if fmt == "tiff":
        a, _ = read_geotiff(path)
    else:
        f = open_array_file(path, fmt)
        try:
            names = f.names()
            pick = next((n for n in ("fused", "I_F") if n in names), None)
            if pick is None:
                cands = [n for n in names if tuple(f.shape(n)[:2]) == scene.pan.shape[:2] and len(f.shape(n)) == 3]
                if len(cands) != 1:
                    raise InputError(f"no fused image in {path.name}: expected a variable 'fused' or 'I_F'; found {f.describe()}")
                pick = cands[0]
            a = f.read(pick)
            scale = {"fused": "unit", "I_F": "dn"}.get(pick, "auto")
        finally:
            f.close()
    raw = np.asarray(a)
    if raw.ndim == 2:
        raw = raw[..., None]
    expected = (*scene.pan.shape[:2], scene.nbands)
    if raw.shape != expected:
        raise InputError(f"fused image {path.name} has shape {raw.shape}, expected {expected} (PAN size x MS bands)")
    a = raw.astype(np.float64)
    check_finite(a, f"fused image {path.name}")
    if scale == "unit":
        return a
    if scale == "dn" or raw.dtype.kind in "biu" or float(a.max()) > 1.5:
        return a / scene.max_dn
    return a


# --------------------------------------------------------------------------------------
# Sub-commands
# --------------------------------------------------------------------------------------
def _load(args: argparse.Namespace) -> Scene:
    from pansharp_jax.data.io import load_scene
    from pansharp_jax.data.sensors import get_sensor

    if args.sensor is not None:
        get_sensor(args.sensor)  # unknown sensor: fail before reading the file
    return load_scene(args.input, keys=args.keys, sensor=args.sensor, ratio=args.ratio, bits=args.bits, pan_path=args.pan, index=args.index)


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def cmd_fuse(args: argparse.Namespace) -> int:
    from pansharp_jax.data.io import save_fused

    out = Path(args.out)
    if out.suffix.lower() not in FUSED_EXTS:
        raise InputError(f"unsupported output format '{out.suffix or out.name}': use .tif, .mat or .npz")
    method = resolve_method(args.method, weights=args.weights, ckpt=args.ckpt)
    scene = _load(args)
    fused, seconds = _fuse(method, scene)
    save_fused(out, fused, scene)
    _console().print(f"{method.label}: fused {scene.name} ({fused.shape[0]}x{fused.shape[1]}x{fused.shape[2]}) in {seconds:.2f} s -> {out}", markup=False)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pansharp_jax.report import MetricTable, print_table
    from pansharp_jax.report.tables import metrics_json

    scene = _load(args)
    mode = _pick_mode(scene, args.mode)
    fused = read_fused(args.fused, scene)
    scores = _evaluate(fused, scene, mode)
    table = MetricTable(mode, scene.name, scene.sensor.name, scene.ratio)
    table.add(Path(args.fused).name, Path(args.fused).name, scores)
    print_table(table, _console())
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            metrics_json(scores, mode=mode, scene=scene.name, fused=str(args.fused), sensor=scene.sensor.name, ratio=scene.ratio),
            encoding="utf-8",
        )
    return 0


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    from pansharp_jax.report import print_table

    methods = _resolve_list(args.methods, {"weights": args.weights, "ckpt": args.ckpt})
    scene = _load(args)
    _pick_mode(scene, args.mode)
    out = _out_dir(args.out)
    table = run_comparison(scene, methods, out, mode=args.mode, progress=not args.no_progress)
    console = _console()
    print_table(table, console)
    console.print(f"wrote metrics.csv, metrics.json, metrics.md and grid.png in {out}", markup=False)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pansharp_jax.train.__main__ import run

    t0 = time.perf_counter()
    summary = run(args, args.overrides)
    parts = [f"trained {summary['model']} to step {summary['step']} in {time.perf_counter() - t0:.1f} s"]
    if "loss" in summary["train"]:
        parts.append(f"last loss {summary['train']['loss']:.4g}")
    if summary["best"] is not None:
        step, value = summary["best"]
        parts.append(f"best {summary['best_metric']} {value:.4g} at step {step}")
    parts.append(f"checkpoints in {Path(summary['workdir']) / 'checkpoints'}")
    _console().print("; ".join(parts), markup=False)
    return 0


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
    method = dataclasses.replace(resolve_method("fusionnet", ckpt=str(workdir)), label="FusionNet (demo-trained)")
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
    n_net = sum(_normalise(n) == "fusionnet" for n in names)
    if n_net > 1:
        raise InputError("method listed twice: fusionnet")
    want_net = n_net == 1
    if want_net and steps == 0:
        raise InputError("fusionnet in the demo is trained on the spot: give --train-steps > 0 or leave it out")
    others = [n for n in names if _normalise(n) != "fusionnet"]
    fixed = _resolve_list(",".join(others)) if others else []
    out = _out_dir(args.out)
    console = _console()
    console.print(
        f"demo: synthetic QuickBird-like scene (seed {args.seed}), {len(names)} methods, "
        "reduced resolution (Wald protocol, with GT) then full resolution (QNR/HQNR)"
    )
    for mode in ("rr", "fr"):
        write_demo_scene(out / f"demo_{mode}.npz", mode, seed=args.seed)
    methods = list(fixed)
    if want_net:
        net, report = _train_demo_fusionnet(out, demo_scene("fr", seed=args.seed), steps, progress=not args.no_progress)
        console.print(report, markup=False)
        it = iter(fixed)
        methods = [net if _normalise(n) == "fusionnet" else next(it) for n in names]
    for mode in ("rr", "fr"):
        scene = demo_scene(mode, seed=args.seed)
        table = run_comparison(
            scene, methods, out, mode=mode, stem=f"{mode}_metrics", grid_name=f"{mode}_grid.png",
            progress=not args.no_progress,
        )  # fmt: skip
        print_table(table, console)
    extra = f", {DEMO_RUN}/" if want_net else ""
    console.print(
        f"wrote {out}/: rr_metrics.{{csv,json,md}}, fr_metrics.{{csv,json,md}}, rr_grid.png, fr_grid.png, "
        f"demo_rr.npz, demo_fr.npz{extra} in {time.perf_counter() - t0:.1f} s",
        markup=False,
    )
    return 0


# --------------------------------------------------------------------------------------
# Parser and entry point
# --------------------------------------------------------------------------------------
class _UsageError(Exception):
    """A command-line mistake (argparse's own errors), reported like InputError."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # noqa: D102 - argparse hook
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _input_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scene")
    g.add_argument("--input", "-i", required=True, metavar="SCENE", help="scene file: .mat (v5/v7.3), .h5, .npz, or the MS GeoTIFF")
    g.add_argument("--pan", metavar="PAN_FILE", help="the PAN GeoTIFF (GeoTIFF input only)")
    g.add_argument("--sensor", metavar="S", help="sensor: QB, IKONOS, GeoEye1, WV2, WV3, WV4, GF2, Pleiades, Landsat8, generic (default: from the file)")
    g.add_argument("--keys", metavar="lrms=A,pan=B[,gt=C]", help="variable names, instead of layout detection")
    g.add_argument("--ratio", type=int, help="PAN/MS resolution ratio (default: from the file or the sizes)")
    g.add_argument("--bits", type=int, help="radiometric depth, DN = value x (2**bits - 1) (default: from the file or sensor)")
    g.add_argument("--index", type=int, default=0, help="sample of a multi-scene file (PanCollection h5), 0-based (default: 0)")


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("learned methods (one of the two)")
    g.add_argument("--weights", metavar="FILE", help="released PyTorch weights (.pth) of the learned method")
    g.add_argument("--ckpt", metavar="WORKDIR", help="a 'pansharp train' workdir: its best checkpoint (else the latest)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``pansharp`` (sub-commands fuse, eval, compare, train, demo)."""
    from pansharp_jax.train import __main__ as train_main

    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of internal errors")
    parser = _Parser(prog="pansharp", description="Pan-sharpening with JAX: fuse, evaluate and compare methods.")
    parser.add_argument("--version", action="version", version=f"pansharp {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show the traceback of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("fuse", parents=[debug], help="fuse one scene with one method", description="Fuse a scene with one method and write the product.")
    _input_args(p)
    p.add_argument("--method", "-m", required=True, help="method name (e.g. gsa, mtf_glp_hpm, BT-H)")
    _model_args(p)
    p.add_argument("--out", "-o", required=True, metavar="OUT", help="output file: .tif (DN GeoTIFF), .mat (I_F in DN) or .npz (fused on [0, 1])")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("eval", parents=[debug], help="score a fused product", description="Score a fused product: reduced resolution with GT, full resolution without.")
    p.add_argument("--fused", "-f", required=True, metavar="OUT", help="the fused product (.tif/.mat/.npz)")
    _input_args(p)
    p.add_argument("--mode", choices=MODES, default="auto", help="rr (vs GT), fr (no reference) or auto (rr when the scene has a GT)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", parents=[debug], help="compare methods on one scene", description="Run several methods on one scene; write metric tables and an image grid.")
    _input_args(p)
    p.add_argument("--methods", required=True, metavar="a,b,c", help="comma-separated method names")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (metrics.csv/json/md, grid.png)")
    _model_args(p)
    p.add_argument("--mode", choices=MODES, default="auto", help="rr (vs GT), fr (no reference) or auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "train", parents=[debug], help="train a learned method", description="Train a learned method (same as python -m pansharp_jax.train).",
        epilog="Any config field can be overridden with --config.KEY=VALUE, e.g. --config.optim.lr=1e-3 --config.steps=500.",
    )  # fmt: skip
    train_main.add_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", parents=[debug], help="run the classical baselines and a quickly trained FusionNet on the embedded demo scene", description="Run the classical baselines, and a FusionNet trained on the spot on the full-resolution scene only, on the embedded synthetic demo scene at reduced and full resolution.")
    p.add_argument("--out", "-o", default="demo_out", metavar="DIR", help="output folder (default: demo_out)")
    p.add_argument("--methods", metavar="a,b,c", help="comma-separated subset of methods; fusionnet = the demo-trained network (default: all classical + fusionnet)")
    p.add_argument("--train-steps", type=int, default=DEMO_TRAIN_STEPS, metavar="N", help=f"FusionNet training steps (default: {DEMO_TRAIN_STEPS}, about a minute on 2 CPU cores; 0 skips it)")
    p.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 internal error, 2 bad input or usage).

    Never raises ``SystemExit``; with ``--debug`` an internal error is re-raised.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    overrides = [a for a in argv if a.startswith("--config.")]  # train's --config.KEY=VALUE
    try:
        args = build_parser().parse_args([a for a in argv if not a.startswith("--config.")])
        if overrides and args.command != "train":
            raise _UsageError(f"unrecognized arguments: {' '.join(overrides)} (config overrides are for 'pansharp train')")
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    except _UsageError as e:
        print(f"pansharp: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    args.overrides = overrides
    use_low_memory_cpu_scheduler()  # before the first JAX computation (see pansharp_jax.runtime)
    if getattr(args, "command", None) == "demo" and args.seed is None:
        from pansharp_jax.data.demo import DEMO_SEED

        args.seed = DEMO_SEED
    try:
        return int(args.func(args))
    except InputError as e:
        print(f"pansharp: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pansharp: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        if debug or getattr(args, "debug", False):
            raise
        print(
            f"pansharp: internal error: {type(e).__name__}: {_one_line(str(e))} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

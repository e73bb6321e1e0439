"""What the ``pansharp`` sub-commands share: the parser class, argument groups, loading
scenes, scoring, reading products back, and output-path checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pansharp_jax.errors import InputError

if TYPE_CHECKING:
    from pansharp_jax.data.scene import Scene
    from pansharp_jax.methods import Method

FUSED_EXTS = (".tif", ".tiff", ".mat", ".npz")
MODES = ("auto", "rr", "fr")


class UsageError(Exception):
    """A command-line mistake (argparse's own errors), reported like InputError."""


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> Any:  # noqa: D102 - argparse hook
        raise UsageError(f"{message} (see '{self.prog} --help')")


def one_line(text: str) -> str:
    """``text`` with all whitespace runs (newlines too) collapsed to one space."""
    return " ".join(str(text).split())


def console() -> Any:
    """A rich console on stdout (160 columns when not a terminal)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def warn(text: str) -> None:
    """One ``pansharp: warning: ...`` line on stderr."""
    print(f"pansharp: warning: {one_line(text)}", file=sys.stderr)


def input_args(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    """The scene options (``--input``, ``--pan``, ``--sensor``, ``--keys``, ``--ratio``, ``--bits``, ``--index``)."""
    g = p.add_argument_group("scene")
    what = "scene file (.mat v5/v7.3, .h5, .npz, or the MS GeoTIFF)"
    if many:
        what += "; or a folder / glob of scenes (catalogue: --out is then a folder)"
    g.add_argument("--input", "-i", required=True, metavar="SCENE", help=what + "; relative paths are also looked up under $PANSHARP_DATA")
    g.add_argument("--pan", metavar="PAN_FILE", help="the PAN GeoTIFF (GeoTIFF input only)")
    g.add_argument("--sensor", metavar="S", help="sensor: QB, IKONOS, GeoEye1, WV2, WV3, WV4, GF2, Pleiades, Landsat8, generic, or a sensor file (.yaml/.json, see README) (default: from the file)")
    g.add_argument("--keys", metavar="lrms=A,pan=B[,gt=C]", help="variable names, instead of layout detection")
    g.add_argument("--ratio", type=int, help="PAN/MS resolution ratio (default: from the file or the sizes)")
    g.add_argument("--bits", type=int, help="radiometric depth, DN = value x (2**bits - 1) (default: from the file or sensor)")
    g.add_argument("--index", type=int, default=0, help="sample of a multi-scene file (PanCollection h5), 0-based (default: 0)")


def model_args(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    """``--weights`` / ``--ckpt`` (several, as NAME=PATH, when ``many``)."""
    g = p.add_argument_group("learned methods")
    if many:
        g.add_argument("--weights", action="append", default=[], metavar="[NAME=]FILE", help="released PyTorch weights (.pth): NAME=FILE per learned method (comma-separated or repeated); a bare FILE when the list has one learned method; relative paths also under $PANSHARP_WEIGHTS")
        g.add_argument("--ckpt", action="append", default=[], metavar="[NAME=]WORKDIR", help="a 'pansharp train' workdir per learned method (NAME=WORKDIR; repeatable)")
    else:
        g.add_argument("--weights", metavar="FILE", help="released PyTorch weights (.pth) of the learned method (relative paths also under $PANSHARP_WEIGHTS)")
        g.add_argument("--ckpt", metavar="WORKDIR", help="a 'pansharp train' workdir: its best checkpoint (else the latest)")


def input_path(path: str | Path) -> Path:
    """An input path as given, else under ``$PANSHARP_DATA`` (relative paths); InputError if neither exists."""
    from pansharp_jax.data.io import find_input

    return Path(find_input(path, "PANSHARP_DATA"))


def load(args: argparse.Namespace, path: str | Path | None = None) -> Scene:
    """The scene of ``--input`` (or ``path``) with the scene options; says what was assumed."""
    from pansharp_jax.data.io import load_scene
    from pansharp_jax.data.sensors import get_sensor

    if args.sensor is not None:
        get_sensor(args.sensor)  # unknown sensor: fail before reading the file
    src = input_path(path if path is not None else args.input)
    pan = input_path(args.pan) if getattr(args, "pan", None) else None
    scene = load_scene(src, keys=args.keys, sensor=args.sensor, ratio=args.ratio, bits=args.bits, pan_path=pan, index=args.index)
    say_assumed(getattr(scene, "assumed", None) or {})
    return scene


def say_assumed(assumed: dict[str, str]) -> None:
    """Warn once about values that were guessed (sensor, bits), naming the flags."""
    if assumed:
        parts = "; ".join(f"{k}: {v}" for k, v in assumed.items())
        flags = ", ".join(f"--{k}" for k in assumed)
        warn(f"assumed {parts} (pass {flags} to set them)")


def say_origin(method: Method) -> None:
    """For a method restored from a training run: which checkpoint it uses (stdout)."""
    if method.origin.startswith("checkpoint "):
        console().print(f"{method.label}: using {method.origin}", markup=False)


def say_method_fit(method: Method, sensor_name: str, ratio: int) -> None:
    """Warn when released or trained weights run on another sensor or ratio."""
    trained = (method.trained_sensor or "").strip()
    if trained and sensor_name not in ("generic", trained):
        warn(f"{method.label} ({method.origin}) was trained on {trained} data; this scene is {sensor_name}")
    elif trained and sensor_name == "generic":
        warn(f"{method.label} ({method.origin}) was trained on {trained} data; the scene's sensor is unknown (pass --sensor)")
    tr = method.tags.get("trained_ratio") if method.tags else None
    if tr and str(tr).isdigit() and int(tr) != int(ratio):
        warn(f"{method.label} ({method.origin}) was trained at ratio {tr}; this scene has ratio {ratio}")


def pick_mode(scene: Scene, mode: str) -> str:
    """``rr`` / ``fr`` for ``auto`` (rr when the scene has a GT); InputError for rr without GT."""
    if mode not in MODES:
        raise InputError(f"unknown mode '{mode}': use rr, fr or auto")
    if mode == "auto":
        return "rr" if scene.has_gt else "fr"
    if mode == "rr" and not scene.has_gt:
        raise InputError(f"mode rr needs a ground truth, and {scene.name} has none: use --mode fr")
    return mode


def evaluate(fused: np.ndarray, scene: Scene, mode: str, protocol: str | None = None) -> dict[str, float]:
    """The metrics of ``fused`` (H, W, C) on [0, 1] under an evaluation ``protocol``
    (:mod:`pansharp_jax.metrics.protocols`; None = the MATLAB toolbox): rr vs the GT (plus
    FSDS, :mod:`pansharp_jax.metrics.fsds`, dB, whole image), fr without. MHIF scenes with a GT are scored with :func:`~pansharp_jax.metrics.mhif.evaluate_mhif`
    (PSNR, SAM, ERGAS, SSIM on [0, 1]) whatever the protocol."""
    from pansharp_jax.metrics.protocols import evaluate_full_protocol, evaluate_reduced_protocol

    if getattr(scene, "task", "") == "mhif" and (mode == "rr" or scene.pan.shape[-1] > 1):  # MHIF: metrics.mhif
        if mode != "rr":
            raise InputError(f"{scene.name} is an MHIF scene without GT: no full-resolution MHIF indices (use --mode rr)")
        from pansharp_jax.metrics.mhif import evaluate_mhif

        return {k: float(v) for k, v in evaluate_mhif(fused, scene.gt, ratio=scene.ratio).items() if k != "convention"}
    if mode == "rr":
        from pansharp_jax.metrics.fsds import fsds_scores

        out = evaluate_reduced_protocol(fused, scene.gt, ratio=scene.ratio, max_dn=scene.max_dn, protocol=protocol)
        out.update(fsds_scores(fused, scene.gt))  # beside every protocol's metrics (no peer reports it)
    else:
        out = evaluate_full_protocol(
            fused, scene.lrms, scene.pan, sensor=scene.sensor, ratio=scene.ratio, max_dn=scene.max_dn, protocol=protocol
        )
    return {k: float(v) for k, v in out.items()}


def protocol_label(scene: Scene, mode: str, protocol: str | None) -> str:
    """The convention a table of :func:`evaluate` scores follows: ``mhif`` for MHIF scenes
    scored against their GT (whatever ``--protocol`` says), else the protocol's name."""
    if getattr(scene, "task", "") == "mhif" and mode == "rr":
        return "mhif"
    return protocol or "toolbox"


def protocol_arg(p: argparse.ArgumentParser) -> None:
    """``--protocol NAME``: the evaluation preset (default: the MATLAB toolbox)."""
    from pansharp_jax.metrics.protocols import PROTOCOLS, protocol_names

    lines = "; ".join(f"{n}: {PROTOCOLS[n].summary}" for n in protocol_names())
    p.add_argument("--protocol", default="toolbox", choices=protocol_names(), metavar="NAME", help=f"evaluation preset ({lines})")


def output_file(path: str | Path, *, overwrite: bool, inputs: list[Path]) -> Path:
    """Check an output file before any computing (one-line InputErrors): a known extension,
    not a folder, its folder exists and is writable, not an input, replaced only with
    ``--overwrite``."""
    from pansharp_jax.products.geotiff import check_output_path

    out = Path(path)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder: give a file name ending in .tif, .mat or .npz")
    if out.suffix.lower() not in FUSED_EXTS:
        raise InputError(f"unsupported output format '{out.suffix or out.name}': use .tif, .mat or .npz")
    return check_output_path(out, overwrite=overwrite, inputs=inputs)


def output_dir(path: str | Path, *, create: bool = True) -> tuple[Path, bool]:
    """An output folder: InputError if it is a file or its parent is missing; created when
    absent and ``create`` (only its last level). Returns (path, created)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        return out, False
    parent = out.absolute().parent
    if not parent.is_dir():
        raise InputError(f"the folder of --out {out} does not exist ({parent}): create it first")
    if create:
        out.mkdir()
    return out, create


def read_fused(path: str | Path, scene: Scene) -> np.ndarray:
    """A fused product written by ``pansharp fuse`` (or the toolbox) as (H, W, C) on [0, 1].

    Variables: ``fused`` (on [0, 1], as ``.npz`` products hold), ``I_F`` (DN, as the
    toolbox and ``.mat`` products), else the only PAN-sized 3-D variable; GeoTIFF bands.
    Integer data are DN; other data are DN when their largest value is > 1.5, else
    already on [0, 1]. DN are divided by ``scene.max_dn``.
    """
    from pansharp_jax.data.io import read_geotiff
    from pansharp_jax.data.io_mat import open_array_file, sniff_format
    from pansharp_jax.data.scene import check_finite

    path = input_path(path)
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

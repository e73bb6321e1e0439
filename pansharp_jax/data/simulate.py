"""Training, validation and test sets from your own full-resolution scenes (Wald protocol).

:func:`simulate` reads full-resolution scenes (anything :func:`~pansharp_jax.data.io.load_scene`
reads: GeoTIFF pairs, .mat, .npz, .h5), takes each scene's MS as the ground truth, degrades
MS and PAN by the sensor's MTF filters and decimation (:func:`~pansharp_jax.data.pipeline.wald_reduce`,
the toolbox's Wald protocol) and writes ``train.h5``, ``valid.h5`` and ``test.h5`` in the
PanCollection layout, plus ``data_card.json``. The trainer reads them as they are
(``data.kind='panc'``).

File layout (PanCollection; values are float DN, i.e. value x (2**bits - 1), unclipped):
  * ``gt``  (N, C, P, P): the scene's MS, cut in P x P patches (P = ``patch``);
  * ``ms``  (N, C, P/r, P/r): the Wald-reduced MS (r = ratio);
  * ``lms`` (N, C, P, P): ``interp23tap(ms)`` per patch (``interp_general`` when r is not
    a power of two), as in PanCollection;
  * ``pan`` (N, 1, P, P): the Wald-reduced PAN (the PAN brought to the MS grid);
  * ``origin`` (N, 3) int32: scene index (into the card's ``sources``), row and column of
    the patch's top-left pixel on that scene's MS grid (the full-resolution PAN patch is
    rows ``ratio*row ... ratio*(row+P)``).
  HDF5 attributes repeat sensor, ratio, bits, max_dn, degrade and split.

Patches: every scene's MS grid (cropped at the bottom/right to a multiple of the ratio)
is tiled with P x P patches at ``stride`` (P and stride multiples of the ratio).
Degradation, ``degrade='scene'`` (default): each whole scene is degraded once and the
patches cut at aligned positions, so no patch sees the filter's border handling;
``degrade='patch'``: each GT patch (with its full-resolution PAN patch) is degraded on
its own, with the replicate padding of the MTF filters at its borders.

Splits (``split = (train, valid, test)`` fractions, summing to 1): target counts are the
fractions of all patches (largest remainder; at least one patch for a non-zero fraction).
They are held out as spatially compact regions: per scene, the patch grid is walked
column by column (or row by row) from one side chosen by the seed (right, left, bottom,
top): the first patches of the walk go to ``test``, the last ones (the opposite side) to
``valid``, the rest to ``train``; the test and valid patches are spread over the scenes in proportion to their patch counts
(in a seeded scene order). When patches overlap (stride < patch), a ``valid`` patch that
overlaps a ``test`` patch and a ``train`` patch that overlaps a ``valid`` or ``test`` patch
are dropped (counted in the card as ``dropped_overlap``): **patches of different splits
never share a pixel**, so ``valid``/``train`` may hold fewer patches than their fraction.
With ``degrade='scene'`` the MTF filter (41 taps) still lets inputs near a split border
depend on up to ~20 PAN-grid pixels of the neighbouring split; ``degrade='patch'`` has no
such reach. Within each file the samples are in a seeded shuffled order.

The seed decides the held-out side of each scene, the scene order of the allocation and
the order of samples in each file: the same scenes and options give the same files.
Files are written to temporary names and renamed at the end (the card last); existing
outputs are replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.data.io import sha256_file
from pansharp_jax.errors import InputError

SPLITS = ("train", "valid", "test")
FILES = {"train": "train.h5", "valid": "valid.h5", "test": "test.h5"}
CARD = "data_card.json"
DEGRADE_MODES = ("scene", "patch")
DTYPES = ("float64", "float32")
SIDES = ("right", "left", "bottom", "top")
DROPPED = -1

Progress = Callable[[str, int, int], None]


# ----------------------------------------------------------------------------- options


def parse_split(spec: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.9,0.05,0.05"`` (or three numbers) -> (train, valid, test) fractions.

    Raises InputError unless there are three finite numbers >= 0 that sum to 1 (within
    1e-6) with a positive train fraction.
    """
    text = spec if isinstance(spec, str) else ",".join(str(x) for x in spec)
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"--split {text!r} must be three numbers train,valid,test, e.g. 0.9,0.05,0.05") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(f"--split {text!r} must be three numbers train,valid,test, e.g. 0.9,0.05,0.05")
    if any(v < 0 for v in values):
        raise InputError(f"--split {text!r} has a negative fraction")
    if abs(sum(values) - 1.0) > 1e-6:
        raise InputError(f"--split {text!r} sums to {sum(values):g}, not 1")
    if values[0] <= 0:
        raise InputError(f"--split {text!r} leaves nothing for training")
    return values[0], values[1], values[2]


def check_geometry(patch: int, stride: int, ratio: int) -> None:
    """Raise InputError unless ``patch`` and ``stride`` are positive multiples of ``ratio``."""
    for what, v in (("patch", patch), ("stride", stride)):
        if int(v) != v or v <= 0 or v % ratio:
            raise InputError(f"--{what} {v} must be a positive multiple of the ratio {ratio} (MS-grid pixels)")


# --------------------------------------------------------------------------- the grid


def patch_tops(height: int, width: int, patch: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Top rows and left columns of the P x P patches tiling a ``height`` x ``width`` grid.

    Returns two int64 arrays (rows ``0, stride, ...`` and columns likewise), each patch
    fully inside the grid; empty when the grid is smaller than one patch.
    """
    rows = np.arange(0, height - patch + 1, stride, dtype=np.int64) if height >= patch else np.zeros(0, np.int64)
    cols = np.arange(0, width - patch + 1, stride, dtype=np.int64) if width >= patch else np.zeros(0, np.int64)
    return rows, cols


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Patches per split for ``n`` patches: largest remainder, >= 1 for a non-zero fraction.

    Raises InputError when ``n`` is too small to give every non-zero fraction a patch.
    """
    raw = [float(f) * n for f in fractions]
    out = [int(math.floor(x + 1e-9)) for x in raw]
    for k in sorted(range(3), key=lambda k: (-(raw[k] - out[k]), k))[: n - sum(out)]:
        out[k] += 1
    for k in range(3):
        if fractions[k] > 0 and out[k] == 0:
            donor = max(range(3), key=lambda j: out[j])
            if out[donor] <= 1:
                raise InputError(f"{n} patches are too few for the split {tuple(fractions)}: use a smaller --stride or --patch, or more scenes")
            out[donor] -= 1
            out[k] += 1
    return out[0], out[1], out[2]


def _random_raw(seed: int, stream: int, n: int) -> np.ndarray:
    return np.random.Philox(key=np.array([seed, stream], np.uint64)).random_raw(n)


def _permutation(seed: int, stream: int, n: int) -> np.ndarray:
    """A permutation of ``range(n)`` from Philox raw bits (stable across NumPy versions)."""
    return np.argsort(_random_raw(seed, stream, n), kind="stable")


def _spread(total: int, sizes: Sequence[int], room: Sequence[int], order: Sequence[int]) -> list[int]:
    """``total`` items over groups in proportion to ``sizes`` (cumulative rounding along
    ``order``), each group at most ``room``; what does not fit moves to the next groups."""
    n = sum(sizes)
    out = [0] * len(sizes)
    carry, cum, prev = 0, 0, 0
    for s in order:
        cum += sizes[s]
        target = int(math.floor(total * cum / n + 0.5)) if n else 0
        want = target - prev + carry
        prev = target
        out[s] = min(want, room[s])
        carry = want - out[s]
    for s in order:
        if carry <= 0:
            break
        extra = min(carry, room[s] - out[s])
        out[s] += extra
        carry -= extra
    return out


def _walk_order(nr: int, nc: int, side: str) -> np.ndarray:
    """Flat indices of an nr x nc grid, column by column (row by row) from ``side``."""
    i, j = np.divmod(np.arange(nr * nc), nc)
    keys = {"right": (i, -j), "left": (i, j), "bottom": (j, -i), "top": (j, i)}[side]
    return np.lexsort(keys)


def _dilate(mask: np.ndarray, g: int) -> np.ndarray:
    """Cells within ``g`` grid steps (Chebyshev) of a True cell."""
    if g <= 0 or not mask.any():
        return mask.copy()
    nr, nc = mask.shape
    padded = np.pad(mask, g)
    out = np.zeros_like(mask)
    for di in range(2 * g + 1):
        for dj in range(2 * g + 1):
            out |= padded[di : di + nr, dj : dj + nc]
    return out


def assign_splits(
    grids: Sequence[tuple[int, int]], split: Sequence[float], seed: int, guard: int
) -> tuple[list[np.ndarray], list[str]]:
    """Split labels of every scene's patch grid (see the module docstring).

    Args:
      grids: (rows, cols) of each scene's patch grid.
      split: (train, valid, test) fractions.
      seed: >= 0; picks each scene's held-out side and the allocation order.
      guard: grid steps within which two patches overlap (``ceil(patch/stride) - 1``).

    Returns:
      (labels, sides): per scene an int8 (rows, cols) array with 0 train, 1 valid, 2 test,
      -1 dropped (overlaps a patch of another split); and each scene's held-out side.
    """
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    sizes = [int(r) * int(c) for r, c in grids]
    n = sum(sizes)
    _, n_valid, n_test = split_counts(n, split)
    order = list(_permutation(seed, 0, len(grids)))
    test = _spread(n_test, sizes, sizes, order)
    valid = _spread(n_valid, sizes, [s - t for s, t in zip(sizes, test)], order)
    sides = [SIDES[int(v % 4)] for v in _random_raw(seed, 1, len(grids))]
    labels = []
    for (nr, nc), side, t, v in zip(grids, sides, test, valid):
        flat = np.zeros(nr * nc, np.int8)
        walk = _walk_order(nr, nc, side) if nr * nc else np.zeros(0, np.int64)
        flat[walk[:t]] = 2
        if v:
            flat[walk[len(walk) - v :]] = 1  # from the far end: valid and test do not touch
        lab = flat.reshape(nr, nc)
        is_test = lab == 2
        lab[(lab == 1) & _dilate(is_test, guard)] = DROPPED
        lab[(lab == 0) & _dilate(is_test | (lab == 1), guard)] = DROPPED
        labels.append(lab)
    return labels, sides


# ---------------------------------------------------------------------- degradation


@functools.lru_cache(maxsize=8)
def _upsampler(ratio: int) -> Callable[[Any], Any]:
    import jax

    from pansharp_jax.data import wald

    fn = wald.interp23tap if ratio & (ratio - 1) == 0 else wald.interp_general
    return jax.jit(functools.partial(fn, ratio=ratio))


def upsample(lrms: np.ndarray, ratio: int) -> np.ndarray:
    """``interp23tap`` (``interp_general`` for ratios that are not powers of two) of
    (N, h, w, C) DN in float64, jitted; (N, ratio*h, ratio*w, C). Equal to the eager
    function up to float64 rounding (~1e-15 relative)."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        return np.asarray(_upsampler(int(ratio))(jnp.asarray(lrms, jnp.float64)))


def scene_patches(
    ms: np.ndarray,
    pan: np.ndarray,
    sensor: Any,
    ratio: int,
    tops: np.ndarray,
    patch: int,
    degrade: str = "scene",
    chunk: int = 64,
) -> Iterator[dict[str, np.ndarray]]:
    """Wald-reduced samples of one scene, ``chunk`` patches at a time.

    Args:
      ms: (h, w, C) full-resolution MS in DN (h, w multiples of ``ratio``); becomes the GT.
      pan: (ratio*h, ratio*w, 1) PAN in DN.
      sensor: sets the MTF gains (a Sensor or a name).
      ratio: resolution ratio.
      tops: (n, 2) top-left (row, col) of each P x P GT patch on the MS grid (multiples of ratio).
      patch: P, a multiple of ``ratio``.
      degrade: ``'scene'`` (degrade the whole scene once, cut aligned patches) or
        ``'patch'`` (degrade every patch on its own).

    Yields:
      dicts of float64 NHWC arrays in DN: ``gt`` (n, P, P, C), ``ms`` (n, P/r, P/r, C),
      ``lms`` (n, P, P, C), ``pan`` (n, P, P, 1).
    """
    from pansharp_jax.data.pipeline import wald_reduce

    if degrade not in DEGRADE_MODES:
        raise InputError(f"--degrade must be scene or patch, got {degrade!r}")
    r, q = int(ratio), patch // ratio
    tops = np.asarray(tops, np.int64).reshape(-1, 2)
    if degrade == "scene" and len(tops):
        lrms_all, pan_lr_all = wald_reduce(ms, pan, sensor, r)
    size = min(chunk, len(tops))
    for start in range(0, len(tops), size):
        n = len(tops[start : start + size])
        # every chunk padded to one size (repeating its last patch): one compiled shape
        part = tops[np.minimum(np.arange(start, start + size), start + n - 1)]
        gt = np.stack([ms[a : a + patch, b : b + patch] for a, b in part])
        if degrade == "scene":
            lrms = np.stack([lrms_all[a // r : a // r + q, b // r : b // r + q] for a, b in part])
            pan_lr = np.stack([pan_lr_all[a : a + patch, b : b + patch] for a, b in part])
        else:
            pan_hr = np.stack([pan[a * r : (a + patch) * r, b * r : (b + patch) * r] for a, b in part])
            lrms, pan_lr = wald_reduce(gt, pan_hr, sensor, r)
        batch = {"gt": gt, "ms": lrms, "lms": upsample(lrms, r), "pan": pan_lr}
        yield {k: np.asarray(v)[:n] for k, v in batch.items()}


# --------------------------------------------------------------------------- the writer


@dataclasses.dataclass(frozen=True)
class SceneFile:
    """One input scene: a scene file, or an MS GeoTIFF with its PAN GeoTIFF."""

    path: Path
    pan_path: Path | None = None

    @property
    def label(self) -> str:
        return self.path.name if self.pan_path is None else f"{self.path.name}+{self.pan_path.name}"


@dataclasses.dataclass
class SimulateReport:
    """What :func:`simulate` wrote: the folder, the files per split, the data card (a dict),
    the trainer's ``config.data`` overrides, the seconds taken."""

    out_dir: Path
    files: dict[str, Path]
    card: dict[str, Any]
    train_overrides: dict[str, Any]
    seconds: float


def check_outputs(out_dir: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse (InputError) an ``out_dir`` that is a file, whose parent is missing, or that
    already holds a set (``train.h5``, ``valid.h5``, ``test.h5``, ``data_card.json``)
    unless ``overwrite``. Creates nothing."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if not out.exists() and not out.absolute().parent.is_dir():
        raise InputError(f"the folder of --out {out} does not exist ({out.absolute().parent}): create it first")
    there = [name for name in (*FILES.values(), CARD) if (out / name).exists()]
    if there and not overwrite:
        raise InputError(f"{out} already holds {', '.join(there)}: pass --overwrite to replace them")
    return out


def _to_dn(x: np.ndarray, max_dn: float) -> np.ndarray:
    """[0, 1] -> DN float64, snapped to integers when the data were integers (error < 1e-6)."""
    dn = np.asarray(x, np.float64) * max_dn
    snapped = np.rint(dn)
    return snapped if np.abs(dn - snapped).max(initial=0.0) < 1e-6 else dn


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tempfile(out: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


def _sensor_label(sensor_arg: Any, sensor: Any) -> str:
    """What to put in ``data.sensor``: the sensor's name, or the file it came from."""
    from pansharp_jax.data.sensors import is_sensor_file

    if isinstance(sensor_arg, str) and is_sensor_file(sensor_arg):
        return str(Path(sensor_arg).absolute())
    return str(sensor.name)


@dataclasses.dataclass
class _Survey:
    """Pass 1: the facts shared by all scenes and each scene's grid."""

    sensor: Any
    bits: int
    ratio: int
    bands: int
    scenes: list[dict[str, Any]]  # shape, pan_shape, hw (used MS size), rows, cols, name


def _survey(
    scenes: Sequence[SceneFile], load: Callable[[SceneFile, int | None], Any], bits: int | None,
    patch: int, stride: int, say: Callable[[str], None], tick: Progress,
) -> _Survey:  # fmt: skip
    """Read and check every scene (one sensor, bit depth, ratio and band count) before
    anything is written; tile each scene's MS grid."""
    infos: list[dict[str, Any]] = []
    ref: Any = None
    for k, sf in enumerate(scenes):
        scene = load(sf, bits)
        if scene.assumed:
            say(f"{sf.label}: assumed " + "; ".join(f"{a}: {b}" for a, b in scene.assumed.items()))
        if scene.has_gt:
            say(f"{sf.label} has a ground truth (a reduced-resolution scene): its LRMS is used as the full-resolution MS")
        if ref is None:
            ref = scene
            check_geometry(patch, stride, scene.ratio)
        for what, mine, theirs in (
            ("sensor", scene.sensor, ref.sensor), ("bits", scene.bits, ref.bits),
            ("ratio", scene.ratio, ref.ratio), ("band count", scene.nbands, ref.nbands),
        ):  # fmt: skip
            if mine != theirs:
                show = (lambda x: x.name) if what == "sensor" else str
                hint = f" (pass --{what} to use one)" if what in ("sensor", "bits") else ""
                raise InputError(
                    f"scenes differ in {what}: {scenes[0].label} has {show(theirs)}, {sf.label} has {show(mine)}; "
                    f"one set takes one {what}{hint}"
                )
        r = scene.ratio
        h, w = (scene.lrms.shape[0] // r) * r, (scene.lrms.shape[1] // r) * r
        rows, cols = patch_tops(h, w, patch, stride)
        if not len(rows) or not len(cols):
            say(f"{sf.label}: MS {h}x{w} is smaller than one {patch}x{patch} patch; skipped")
        infos.append({"shape": scene.lrms.shape, "pan_shape": scene.pan.shape, "hw": (h, w), "rows": rows, "cols": cols,
                      "name": scene.name})  # fmt: skip
        tick("check", k + 1, len(scenes))
    return _Survey(ref.sensor, ref.bits, ref.ratio, ref.nbands, infos)


def _fill(
    handles: dict[str, Any], scenes: Sequence[SceneFile], load: Callable[[SceneFile, int | None], Any], survey: _Survey,
    labels: list[np.ndarray], slots: dict[str, np.ndarray], patch: int, degrade: str, tick: Progress,
) -> None:  # fmt: skip
    """Pass 2: degrade every scene, cut its kept patches, write each at its shuffled slot."""
    r, max_dn = survey.ratio, float(2**survey.bits - 1)
    total = sum(len(v) for v in slots.values())
    filled, done = dict.fromkeys(SPLITS, 0), 0
    for s, (sf, info, lab) in enumerate(zip(scenes, survey.scenes, labels)):
        keep = np.argwhere(lab != DROPPED)
        if not len(keep):
            continue
        scene = load(sf, survey.bits)
        h, w = info["hw"]
        ms, pan = _to_dn(scene.lrms[:h, :w], max_dn), _to_dn(scene.pan[: h * r, : w * r], max_dn)
        del scene
        tops = np.stack([info["rows"][keep[:, 0]], info["cols"][keep[:, 1]]], axis=1)
        which = lab[keep[:, 0], keep[:, 1]]
        at = 0
        for batch in scene_patches(ms, pan, survey.sensor, r, tops, patch, degrade):
            for i in range(len(batch["gt"])):
                name = SPLITS[which[at]]
                slot = int(slots[name][filled[name]])
                filled[name] += 1
                f = handles[name]
                for key in ("gt", "ms", "lms", "pan"):
                    f[key][slot] = batch[key][i].transpose(2, 0, 1)
                f["origin"][slot] = (s, *tops[at])
                at += 1
            done += len(batch["gt"])
            tick("write", done, total)


def _card(
    scenes: Sequence[SceneFile], survey: _Survey, sides: list[str], labels: list[np.ndarray], files: dict[str, Path],
    overrides: dict[str, Any], opts: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The data card: what was made, from what, how, and how to train on it."""
    from pansharp_jax import __version__
    from pansharp_jax.data.sensors import sensor_to_dict

    sens, r, c = survey.sensor, survey.ratio, survey.bands
    per_scene = [{name: int((lab == k).sum()) for k, name in enumerate(SPLITS)} for lab in labels]
    counts = {name: sum(p[name] for p in per_scene) for name in SPLITS}
    total = sum(lab.size for lab in labels)
    return {
        "format": "PanCollection h5: gt (N,C,H,W), ms (N,C,H/r,W/r), lms (N,C,H,W) = interp23tap(ms), "
        "pan (N,1,H,W), float DN (value x (2**bits - 1)), unclipped; origin (N,3) int32 = source index, row, col "
        "of the patch's top-left pixel on the source's MS grid",
        "package": "pansharp_jax",
        "version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sensor": sensor_to_dict(sens),
        "mtf_gains": {"ms": [float(g) for g in sens.gains(c)], "pan": float(sens.pan_gnyq)},
        "bits": survey.bits,
        "max_dn": float(2**survey.bits - 1),
        "ratio": r,
        "bands": c,
        "patch": opts["patch"],
        "ms_patch": opts["patch"] // r,
        "stride": opts["stride"],
        "split": dict(zip(SPLITS, opts["split"])),
        "seed": opts["seed"],
        "degrade": opts["degrade"],
        "dtype": opts["dtype"],
        "lms_interpolator": "interp23tap" if r & (r - 1) == 0 else "interp_general",
        "split_method": "per scene, test patches from the held-out side, valid from the opposite side, train "
        "between; patches of different splits never share a pixel (valid/train patches overlapping another "
        "split are dropped); samples shuffled within each file by the seed",
        "counts": counts,
        "requested": dict(zip(SPLITS, split_counts(total, opts["split"]))),
        "dropped_overlap": int(total - sum(counts.values())),
        "overlap_guard_cells": math.ceil(opts["patch"] / opts["stride"]) - 1,
        "files": {name: p.name for name, p in files.items()},
        "sources": [
            {
                "file": str(sf.path),
                "sha256": sha256_file(sf.path),
                **({"pan_file": str(sf.pan_path), "pan_sha256": sha256_file(sf.pan_path)} if sf.pan_path else {}),
                "name": info["name"],
                "ms_shape": [int(x) for x in info["shape"]],
                "pan_shape": [int(x) for x in info["pan_shape"]],
                "used_ms": [int(x) for x in info["hw"]],
                "heldout_side": side,
                "patches": mine,
            }
            for sf, info, side, mine in zip(scenes, survey.scenes, sides, per_scene)
        ],
        "train_overrides": overrides,
    }


def simulate(
    scenes: Sequence[SceneFile],
    out_dir: str | os.PathLike[str],
    *,
    sensor: Any = None,
    bits: int | None = None,
    ratio: int | None = None,
    keys: Any = None,
    index: int = 0,
    patch: int = 64,
    stride: int = 32,
    split: str | Sequence[float] = (0.9, 0.05, 0.05),
    seed: int = 0,
    degrade: str = "scene",
    dtype: str = "float64",
    overwrite: bool = False,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> SimulateReport:
    """Write ``train.h5``, ``valid.h5``, ``test.h5`` and ``data_card.json`` into ``out_dir``.

    Args:
      scenes: the full-resolution scenes (their MS becomes the GT).
      out_dir: the output folder (created if missing; its parent must exist).
      sensor, bits, ratio, keys, index: as for :func:`~pansharp_jax.data.io.load_scene`.
        Bits: the argument, else each file's declared depth (``L``/``bits``, 8 for uint8),
        else the sensor's; all scenes must agree, and a value above ``2**bits - 1`` (or
        below 0) is refused naming the file. All scenes must share sensor, ratio and
        band count.
      patch, stride: GT patch side and stride in MS-grid pixels (multiples of the ratio).
      split: (train, valid, test) fractions or ``"0.9,0.05,0.05"``.
      seed: >= 0; see the module docstring.
      degrade: ``'scene'`` or ``'patch'``.
      dtype: ``'float64'`` (default; exact DN of the float64 degradation) or ``'float32'``.
      overwrite: replace an existing set in ``out_dir``.
      progress: called as ``progress(stage, done, total)`` (stage ``'check'`` per scene,
        then ``'write'`` per patch).
      warn: called with one line per value a loader guessed (sensor, bits, ratio) and per
        skipped scene.

    Returns:
      A :class:`SimulateReport`; splits with no patch get no file.

    Raises:
      InputError: bad options, unreadable or out-of-range scenes, inconsistent scenes,
      outputs present without ``overwrite``; nothing is written then.
    """
    import time

    import h5py

    from pansharp_jax.data.io import load_scene

    t0 = time.perf_counter()
    fractions = parse_split(split)
    if degrade not in DEGRADE_MODES:
        raise InputError(f"--degrade must be scene or patch, got {degrade!r}")
    if dtype not in DTYPES:
        raise InputError(f"dtype must be float64 or float32, got {dtype!r}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    for what, v in (("patch", patch), ("stride", stride)):
        if v <= 0:
            raise InputError(f"--{what} must be positive, got {v}")
    if not scenes:
        raise InputError("no scenes to simulate from")
    out = check_outputs(out_dir, overwrite=overwrite)
    tick = progress or (lambda _stage, _done, _total: None)

    def load(sf: SceneFile, b: int | None) -> Any:
        try:
            return load_scene(sf.path, pan_path=sf.pan_path, keys=keys, sensor=sensor, ratio=ratio, bits=b, index=index)
        except InputError as e:
            msg = str(e)
            raise InputError(msg if sf.path.name in msg else f"{sf.label}: {msg}") from None

    survey = _survey(scenes, load, bits, patch, stride, warn or (lambda _msg: None), tick)
    grids = [(len(i["rows"]), len(i["cols"])) for i in survey.scenes]
    total = sum(nr * nc for nr, nc in grids)
    if total == 0:
        raise InputError(f"no {patch}x{patch} patch fits in any scene: use a smaller --patch")
    guard = math.ceil(patch / stride) - 1
    labels, sides = assign_splits(grids, fractions, seed, guard)
    counts = {name: int(sum((lab == k).sum() for lab in labels)) for k, name in enumerate(SPLITS)}
    if counts["train"] == 0:
        why = f"training patches overlapping valid/test ones are dropped; try --stride {patch}, " if guard else ""
        raise InputError(f"no training patch left of {total} ({why}a smaller --patch, or more scenes)")

    out.mkdir(exist_ok=True)
    c, q, max_dn = survey.bands, patch // survey.ratio, float(2**survey.bits - 1)
    shapes = {"gt": (c, patch, patch), "ms": (c, q, q), "lms": (c, patch, patch), "pan": (1, patch, patch)}
    attrs = {"sensor": survey.sensor.name, "ratio": survey.ratio, "bits": survey.bits, "max_dn": max_dn,
             "degrade": degrade, "patch": patch, "stride": stride}  # fmt: skip
    temps: dict[str, Path] = {}
    handles: dict[str, Any] = {}
    try:
        for name in (n for n in SPLITS if counts[n]):
            temps[name] = _tempfile(out, FILES[name])
            f = handles[name] = h5py.File(temps[name], "w")
            for key, shp in shapes.items():
                f.create_dataset(key, shape=(counts[name], *shp), dtype=np.dtype(dtype), chunks=(1, *shp))
            f.create_dataset("origin", shape=(counts[name], 3), dtype=np.int32)
            f.attrs.update({**attrs, "split": name})
        slots = {name: _permutation(seed, 2 + k, counts[name]) for k, name in enumerate(SPLITS)}
        _fill(handles, scenes, load, survey, labels, slots, patch, degrade, tick)
        for f in handles.values():
            f.close()
        handles.clear()
        files = {name: out / FILES[name] for name in temps}
        overrides: dict[str, Any] = {
            "data.kind": "panc",
            "data.train": str(files["train"].absolute()),
            "data.val": str(files["valid"].absolute()) if "valid" in files else "",
            "data.scale": max_dn,
            "data.sensor": _sensor_label(sensor, survey.sensor),
            "data.ratio": survey.ratio,
            "model.bands": c,
        }
        opts = {"patch": patch, "stride": stride, "split": fractions, "seed": seed, "degrade": degrade, "dtype": dtype}
        card = _card(scenes, survey, sides, labels, files, overrides, opts)
        temps["card"] = _tempfile(out, CARD)
        temps["card"].write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        for name, path in files.items():
            os.replace(temps.pop(name), path)
        for name in SPLITS:  # a split that is empty now: no stale file from an earlier set
            if name not in files and (out / FILES[name]).exists():
                (out / FILES[name]).unlink()
        os.replace(temps.pop("card"), out / CARD)
    finally:
        for f in handles.values():
            f.close()
        for tmp in temps.values():
            if tmp.exists():
                tmp.unlink()
    return SimulateReport(out, files, card, overrides, time.perf_counter() - t0)

"""Scene files in and fused products out: ``load_scene`` and ``save_fused``.

Inputs (format from the file signature, not the extension):
  * MATLAB .mat v5 and v7.3, plain HDF5 (PanCollection ``.h5``) and NumPy ``.npz``, with
    the community layouts detected from variable names and shapes (first match wins):

    ========  ===========================  ========  ==========================
    layout    LRMS                         PAN       GT (optional)
    ========  ===========================  ========  ==========================
    toolbox   ``I_MS_LR``                  ``I_PAN`` ``I_GT``
    pnn       ``I_MS`` (must be low-res)   ``I_PAN`` ``I_GT``
    lrtc      ``I_lrms``                   ``I_pan`` ``Ref_I_gt`` / ``I_gt``
    cdif      ``lrms``                     ``pan``   ``gt``
    panc      ``ms`` (low-res; ``lms``     ``pan``   ``gt``
              is the upsampled MS)
    ========  ===========================  ========  ==========================

    Names match exactly, else case-insensitively. ``I_MS`` / ``ms`` are taken as the LRMS
    only when they are smaller than the PAN (in the toolbox's own files ``I_MS`` is the
    MS upsampled to the PAN grid, which is never used as LRMS). ``keys={"lrms": ...,
    "pan": ..., "gt": ...}`` (or the CLI string ``"lrms=A,pan=B,gt=C"``) overrides it.
    Metadata variables ``sensor``, ``ratio`` and ``L`` (or ``bits``) are read when present.
  * GeoTIFF: a multi-band MS GeoTIFF as ``path`` plus the PAN GeoTIFF as ``pan_path``
    (MS and PAN are always separate files; there is no single-file MS+PAN GeoTIFF).
    The scene's ``georef`` is the PAN's. Needs rasterio (``pip install pansharp_jax[geo]``).

Scale (every array becomes float64 on [0, 1]):
  * integer arrays are DN: divided by ``2**bits - 1``;
  * float arrays whose largest finite value is <= 1.5 are already on [0, 1] (values in
    (1, 1.5] then fail validation as out of range instead of silently becoming
    near-black DN); larger float arrays are DN.
  * ``bits``: the argument, else the file's ``L``/``bits``, else 8 for uint8 data,
    else for [0, 1]-normalised files the normalisation used by the public datasets
    (2047 for WV3/WV2/QB..., 1023 for GF2 and Pleiades), else the sensor's depth.
  * sensor: the argument, else the file's ``sensor`` (unless ``'none'``), else the file
    name (``wv3_...``, ``gf2_...``, ``pleiades``, ``ikonos``, ``geoeye1``...), else generic.
  * ratio: the argument, else the file's ``ratio``, else PAN size / LRMS size when that
    is an integer, else the sensor's ratio (4).
  * every value guessed rather than given or read (sensor from the file name or generic,
    bits from the data type or the sensor, ratio from the sensor) is recorded in
    ``Scene.assumed`` with how it was guessed, so front ends can say so.
  * GeoTIFF pairs must share the CRS and cover the same ground (extents overlapping and
    equal within one MS pixel): ``io_geotiff.check_pair_alignment``.

Damaged files never crash a reader: every array's declared size is checked against
``io_mat.MAX_ARRAY_BYTES`` / ``MAX_ARRAY_DIM`` (env ``PANSHARP_MAX_ARRAY_BYTES`` /
``PANSHARP_MAX_ARRAY_DIM``) before it is read, and any damage becomes an InputError.

Every problem raises InputError with a one-line message (missing file, damaged file,
unknown layout with the keys found, missing key, and the Scene's own checks: band
count, PAN/ratio/shape mismatch, NaN/Inf, values outside the DN range).

Outputs (``save_fused``, by extension, written atomically): ``.tif``/``.tiff`` GeoTIFF
in DN (uint16 for bits <= 16) with the PAN's georeference; ``.mat`` v5 with ``I_F`` in
DN float64 (as the toolbox); ``.npz`` with ``fused`` float32 on [0, 1] (H, W, C) plus
``sensor``, ``ratio``, ``bits``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.data.io_geotiff import check_pair_alignment, read_geotiff, write_geotiff
from pansharp_jax.data.io_mat import ArrayFile, open_array_file, printable, sniff_format
from pansharp_jax.data.scene import Scene, check_finite
from pansharp_jax.data.sensors import SENSORS, Sensor, get_sensor
from pansharp_jax.errors import InputError

__all__ = [
    "load_scene", "save_fused", "read_geotiff", "write_geotiff", "detect_layout", "parse_keys", "Layout",
    "find_input", "resolve_sensor", "resolve_bits", "resolve_ratio",
]  # fmt: skip

# name, LRMS names, PAN names, GT names
_LAYOUTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("toolbox", ("I_MS_LR",), ("I_PAN",), ("I_GT",)),
    ("pnn", ("I_MS",), ("I_PAN",), ("I_GT",)),
    ("lrtc", ("I_lrms",), ("I_pan",), ("Ref_I_gt", "I_gt")),
    ("cdif", ("lrms",), ("pan",), ("gt",)),
    ("panc", ("ms",), ("pan",), ("gt",)),
)
_ROLES = ("lrms", "pan", "gt")
_KEYS_HINT = "pass keys explicitly, e.g. --keys lrms=NAME,pan=NAME[,gt=NAME] (keys={'lrms': ..., 'pan': ...} in Python)"
# Scale of the [0, 1]-normalised public datasets where it differs from the sensor's depth.
_NORMALISED_BITS = {"Pleiades": 10}
_DN_FLOAT_THRESHOLD = 1.5


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which variable plays which role: ``keys`` maps ``lrms``/``pan``/``gt`` to names."""

    name: str
    keys: dict[str, str]
    container: str


def parse_keys(keys: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """``"lrms=A,pan=B,gt=C"`` or a mapping -> ``{"lrms": "A", ...}``; InputError if malformed."""
    if keys is None:
        return None
    if isinstance(keys, str):
        out: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in keys.split(","))):
            role, sep, name = part.partition("=")
            if not sep or not name.strip():
                raise InputError(f"malformed keys {keys!r}: expected lrms=NAME,pan=NAME[,gt=NAME]")
            out[role.strip()] = name.strip()
        keys = out
    keys = dict(keys)
    bad = sorted(set(keys) - set(_ROLES))
    if bad:
        raise InputError(f"unknown key role(s) {', '.join(bad)}: use lrms, pan and optionally gt")
    if "lrms" not in keys or "pan" not in keys:
        raise InputError("keys must name at least lrms and pan, e.g. --keys lrms=NAME,pan=NAME")
    return keys


def _find(names: list[str], wanted: tuple[str, ...]) -> str | None:
    for w in wanted:
        if w in names:
            return w
    lower = {n.lower(): n for n in names}
    for w in wanted:
        if w.lower() in lower:
            return lower[w.lower()]
    return None


def _spatial(shape: tuple[int, ...]) -> tuple[int, int]:
    return int(shape[0]), int(shape[1])


def _detect(f: ArrayFile, keys: Mapping[str, str] | None) -> Layout:
    names = f.names()
    where = f"{f.path.name} ({f.kind})"
    if keys is not None:
        for role, name in keys.items():
            if name not in names:
                stored = f.dtype_of(name)
                if stored is not None:
                    raise InputError(
                        f"variable '{name}' (for {role}) in {where} is not a real-valued image of 2 or more "
                        f"dimensions (stored type {stored}); keys found: {f.describe()}"
                    )
                raise InputError(f"key '{name}' (for {role}) not found in {where}; keys found: {f.describe()}")
        return Layout("explicit", dict(keys), f.kind)
    upsampled_only = None
    for lname, lr_names, pan_names, gt_names in _LAYOUTS:
        lr, pan = _find(names, lr_names), _find(names, pan_names)
        if lr is None or pan is None:
            continue
        (h, w), (ph, pw) = _spatial(f.shape(lr)), _spatial(f.shape(pan))
        if (h, w) == (ph, pw):  # PAN-sized MS: the upsampled MS, not the LRMS
            upsampled_only = upsampled_only or lr
            continue
        found = {"lrms": lr, "pan": pan}
        gt = _find(names, gt_names)
        if gt is not None:
            found["gt"] = gt
        return Layout(lname, found, f.kind)
    if upsampled_only is not None:
        raise InputError(
            f"'{upsampled_only}' in {where} is PAN-sized (the upsampled MS) and no low-resolution MS "
            f"was found; keys found: {f.describe()}; {_KEYS_HINT}"
        )
    raise InputError(f"no recognisable pan-sharpening layout in {where}; keys found: {f.describe()}; {_KEYS_HINT}")


def detect_layout(path: str | os.PathLike[str], keys: str | Mapping[str, str] | None = None) -> Layout:
    """The layout ``load_scene`` would use for an array file (.mat/.h5/.npz)."""
    f = open_array_file(Path(path))
    try:
        return _detect(f, parse_keys(keys))
    finally:
        f.close()


def _sensor_from_name(*paths: Path) -> Sensor | None:
    aliases = {k.lower(): k for k in SENSORS} | {
        "qb": "QB", "quickbird": "QB", "ikonos": "IKONOS", "geoeye1": "GeoEye1", "geoeye": "GeoEye1",
        "ge1": "GeoEye1", "wv2": "WV2", "wv3": "WV3", "wv4": "WV4", "worldview2": "WV2",
        "worldview3": "WV3", "worldview4": "WV4", "gf2": "GF2", "gaofen2": "GF2", "pleiades": "Pleiades",
        "landsat8": "Landsat8", "landsat9": "Landsat9",
    }  # fmt: skip
    aliases.pop("generic", None)
    for p in paths:
        stem = p.stem.lower()
        for tok in re.split(r"[^a-z0-9]+", stem.replace("-", "")):
            if tok in aliases:
                return get_sensor(aliases[tok])
        for alias in sorted(aliases, key=len, reverse=True):  # long names inside a token
            if len(alias) >= 5 and alias in stem.replace("-", ""):
                return get_sensor(aliases[alias])
    return None


_NO_SENSOR = "generic (no sensor given, none in the file or its name)"


def resolve_sensor(arg: str | Sensor | None, in_file: Any, paths: tuple[Path, ...]) -> tuple[Sensor, str | None]:
    """The scene's sensor and, when it was guessed, a note saying how.

    Order: the argument, else the file's ``sensor`` string (unless empty, ``none`` or
    ``generic``), else a sensor named in a file name (``wv3_...``), else generic.

    Returns:
      ``(sensor, note)``; ``note`` is None when the sensor was given or read from the
      file, else a phrase for :attr:`Scene.assumed` (``"generic (no sensor given, none
      in the file or its name)"``, ``"WV3 (guessed from the file name wv3_ms.tif)"``).
    """
    if arg is not None:
        return get_sensor(arg), None
    unknown, said_generic = None, False
    if isinstance(in_file, str):
        text = in_file.strip()
        said_generic = text.lower() == "generic"
        if text.lower() not in ("", "none", "generic"):
            try:
                return get_sensor(text), None
            except InputError:
                unknown = text  # unknown sensor string in the file: fall back to the file name
    named = _sensor_from_name(*paths)
    if named is not None:
        return named, f"{named.name} (guessed from the file name {', '.join(p.name for p in paths)})"
    if said_generic:
        return get_sensor(None), None  # the file says generic
    if unknown is not None:
        return get_sensor(None), f"generic (the file's sensor {unknown[:40]!r} is unknown, none in its name)"
    return get_sensor(None), _NO_SENSOR


def _resolve_sensor(arg: str | Sensor | None, in_file: Any, paths: tuple[Path, ...]) -> Sensor:
    return resolve_sensor(arg, in_file, paths)[0]


def _finite_max(a: np.ndarray) -> float:
    fin = a[np.isfinite(a)]
    return float(fin.max()) if fin.size else 0.0


def _is_normalised(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and _finite_max(a) <= _DN_FLOAT_THRESHOLD


def _metadata_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(value)


def resolve_bits(arg: int | None, in_file: Any, sensor: Sensor, arrays: list[np.ndarray]) -> tuple[int, str | None]:
    """The radiometric depth and, when it was guessed, a note saying how.

    Order: the argument, else the file's ``L``/``bits``, else 8 for uint8 data, else for
    [0, 1]-normalised float data the normalisation of the public datasets (10 for
    Pleiades, else the sensor's depth), else the sensor's depth.

    Returns:
      ``(bits, note)`` with bits in [1, 32]; ``note`` None when given or read, else e.g.
      ``"11 (the sensor's default)"``.

    Raises:
      InputError: bits not an integer in [1, 32].
    """
    note = None
    if arg is not None:
        bits = arg
    elif _metadata_number(in_file):
        bits = in_file
    elif any(a.dtype == np.uint8 for a in arrays):
        bits, note = 8, "8 (the data are uint8)"
    elif all(_is_normalised(a) for a in arrays):
        bits = _NORMALISED_BITS.get(sensor.name, sensor.bits)
        note = f"{bits} (the scale of the [0, 1]-normalised public datasets for sensor {sensor.name})"
    else:
        bits = sensor.bits
        note = f"{bits} (the sensor's default)"
    try:
        ok = float(bits).is_integer() and 1 <= int(bits) <= 32
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"bits must be an integer in [1, 32], got {bits!r}")
    return int(bits), note


def _resolve_bits(arg: int | None, in_file: Any, sensor: Sensor, arrays: list[np.ndarray]) -> int:
    return resolve_bits(arg, in_file, sensor, arrays)[0]


def resolve_ratio(
    arg: int | None, in_file: Any, lrms_hw: tuple[int, int], pan_hw: tuple[int, int], sensor: Sensor
) -> tuple[int, str | None]:
    """The PAN/MS resolution ratio and, when it was guessed, a note saying how.

    Order: the argument, else the file's ``ratio``, else PAN size / LRMS size (rows and
    columns, when that is one integer: read from the data, no note), else the sensor's.

    Raises:
      InputError: ratio not a positive integer.
    """
    note = None
    if arg is not None:
        ratio = arg
    elif _metadata_number(in_file):
        ratio = in_file
    else:
        rh, rw = pan_hw[0] / max(lrms_hw[0], 1), pan_hw[1] / max(lrms_hw[1], 1)
        if rh == rw and float(rh).is_integer() and rh >= 1:
            ratio = int(rh)
        else:
            ratio = sensor.ratio
            note = f"{ratio} (the sensor's default; PAN/MS size ratio {rh:g} x {rw:g} is not one integer)"
    try:
        ok = float(ratio).is_integer() and ratio >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"ratio must be a positive integer, got {ratio!r}")
    return int(ratio), note


def _resolve_ratio(arg: int | None, in_file: Any, lrms_hw: tuple[int, int], pan_hw: tuple[int, int], sensor: Sensor) -> int:
    return resolve_ratio(arg, in_file, lrms_hw, pan_hw, sensor)[0]


def _to_unit(a: np.ndarray, max_dn: float) -> np.ndarray:
    """Stored values -> float64 on [0, 1] (DN divided by max_dn; normalised floats kept)."""
    if a.dtype.kind in "biu":
        return a.astype(np.float64) / max_dn
    a = a.astype(np.float64)
    return a if _finite_max(a) <= _DN_FLOAT_THRESHOLD else a / max_dn


def _check_image(role: str, a: np.ndarray, source: str) -> None:
    """Refuse arrays no reader should scale: non-real types, bool, empty, wrong rank."""
    if a.dtype.kind not in "iuf":
        raise InputError(f"{role} in {source} has data type {a.dtype}: expected integer or float image data")
    if a.ndim not in (2, 3):
        raise InputError(f"{role} in {source} must be HxW or HxWxC, got shape {a.shape}")
    if a.size == 0:
        raise InputError(f"{role} in {source} is empty (shape {a.shape})")


def _build(
    arrays: dict[str, np.ndarray],
    *,
    sensor: Sensor,
    bits: int,
    ratio: int,
    name: str,
    georef: Any = None,
    assumed: dict[str, str] | None = None,
) -> Scene:
    max_dn = float(2**bits - 1)
    with np.errstate(over="ignore", invalid="ignore"):  # float16 overflow: caught as Inf by the Scene
        unit = {k: _to_unit(v, max_dn) for k, v in arrays.items()}
    return Scene(
        lrms=unit["lrms"], pan=unit["pan"], gt=unit.get("gt"), sensor=sensor, ratio=ratio, bits=bits,
        name=name, georef=georef, assumed=dict(assumed or {}),
    )  # fmt: skip


def _notes(**notes: str | None) -> dict[str, str]:
    return {k: v for k, v in notes.items() if v is not None}


def _load_arrays(path: Path, fmt: str, *, keys: Any, sensor: Any, ratio: Any, bits: Any, index: int) -> Scene:
    f = open_array_file(path, fmt)
    try:
        layout = _detect(f, parse_keys(keys))
        arrays = {role: f.read(name, index) for role, name in layout.keys.items()}
        meta = {k: f.scalar(k) for k in ("sensor", "ratio", "L", "bits")}
        multi = max(f.nsamples(n) for n in layout.keys.values()) > 1
    finally:
        f.close()
    for role, a in arrays.items():
        _check_image(role, a, path.name)
    s, s_note = resolve_sensor(sensor, meta["sensor"], (path,))
    b, b_note = resolve_bits(bits, meta["L"] if meta["L"] is not None else meta["bits"], s, list(arrays.values()))
    r, r_note = resolve_ratio(ratio, meta["ratio"], _spatial(arrays["lrms"].shape), _spatial(arrays["pan"].shape), s)
    name = f"{path.stem}[{index}]" if multi else path.stem
    notes = _notes(sensor=s_note, bits=b_note, ratio=r_note)
    return _build(arrays, sensor=s, bits=b, ratio=r, name=name, assumed=notes)


def _load_geotiffs(path: Path, pan_path: Path, *, sensor: Any, ratio: Any, bits: Any) -> Scene:
    if sniff_format(pan_path) != "tiff":
        raise InputError(f"pan_path {pan_path} is not a TIFF file")
    ms, ms_geo = read_geotiff(path)
    pan, pan_geo = read_geotiff(pan_path)
    _check_image("lrms", ms, path.name)
    _check_image("pan", pan, pan_path.name)
    check_pair_alignment(path.name, ms_geo, _spatial(ms.shape), pan_path.name, pan_geo, _spatial(pan.shape))
    s, s_note = resolve_sensor(sensor, None, (path, pan_path))
    b, b_note = resolve_bits(bits, None, s, [ms, pan])
    r, r_note = resolve_ratio(ratio, None, _spatial(ms.shape), _spatial(pan.shape), s)
    return _build(
        {"lrms": ms, "pan": pan}, sensor=s, bits=b, ratio=r, name=path.stem, georef=pan_geo,
        assumed=_notes(sensor=s_note, bits=b_note, ratio=r_note),
    )  # fmt: skip


def find_input(path: str | os.PathLike[str], env: str = "PANSHARP_DATA") -> Path:
    """Find an input file: ``path`` itself if it exists, else ``$env/path`` for a relative path.

    Args:
      path: a file path, absolute or relative to the working directory or to the data
        folder named by the environment variable ``env``.
      env: the environment variable holding the data folder (default ``PANSHARP_DATA``).

    Returns:
      The existing path (as given, or joined onto the data folder).

    Raises:
      InputError: ``"file not found: X (also looked in $PANSHARP_DATA)"`` naming the
        variable, not its value (or without the clause when the path is absolute or the
        variable is unset).
    """
    p = Path(path)
    if p.exists():
        return p
    root = os.environ.get(env, "")
    if root and not p.is_absolute():
        candidate = Path(root) / p
        if candidate.exists():
            return candidate
        raise InputError(f"file not found: {p} (also looked in ${env})")
    raise InputError(f"file not found: {p}" + ("" if p.is_absolute() else f" (${env} is not set)"))


def _locate(path: str | os.PathLike[str]) -> Path:
    """``path``, or ``$PANSHARP_DATA/path`` when ``path`` is relative, missing and found there."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    root = os.environ.get("PANSHARP_DATA", "")
    return Path(root) / p if root and (Path(root) / p).exists() else p


def load_scene(
    path: str | os.PathLike[str],
    *,
    keys: str | Mapping[str, str] | None = None,
    sensor: str | Sensor | None = None,
    ratio: int | None = None,
    bits: int | None = None,
    pan_path: str | os.PathLike[str] | None = None,
    index: int = 0,
) -> Scene:
    """Load a pan-sharpening scene from a .mat (v5/v7.3), .h5, .npz or GeoTIFF pair.

    Args:
      path: the scene file; for GeoTIFF input, the multi-band MS GeoTIFF. A relative path
        that does not exist is also looked up under ``$PANSHARP_DATA``.
      keys: explicit variable names ``{"lrms": ..., "pan": ..., "gt": ...}`` (or the CLI
        string ``"lrms=A,pan=B,gt=C"``) instead of layout detection.
      sensor, ratio, bits: override what the file says or what is inferred (see module
        docstring for the order of precedence).
      pan_path: the PAN GeoTIFF (GeoTIFF input only).
      index: the sample to take from stacked (4-D) variables, e.g. PanCollection .h5.

    Returns:
      A validated :class:`Scene`: lrms (h, w, C), pan (H, W, 1), gt (H, W, C) or None, all
      float64 on [0, 1]; DN = value x (2**bits - 1). ``scene.assumed`` says which of
      sensor, bits and ratio were guessed rather than given or read from the file.

    Raises:
      InputError: one line naming the problem.
    """
    path = _locate(path)
    pan_path = _locate(pan_path) if pan_path is not None else None
    try:
        return _load_scene(path, keys=keys, sensor=sensor, ratio=ratio, bits=bits, pan_path=pan_path, index=index)
    except InputError as e:
        msg = str(e)
        if printable(msg) != msg:  # a name from a damaged file carried a newline or control byte
            raise InputError(printable(msg)) from None
        raise


def _load_scene(
    path: Path, *, keys: Any, sensor: Any, ratio: Any, bits: Any, pan_path: Any, index: int
) -> Scene:
    fmt = sniff_format(path)
    if fmt == "tiff":
        if pan_path is None:
            raise InputError(
                f"{path.name} is a GeoTIFF: pass the PAN GeoTIFF too (pan_path=... / --pan); "
                "MS and PAN are read from separate files"
            )
        return _load_geotiffs(path, Path(pan_path), sensor=sensor, ratio=ratio, bits=bits)
    if pan_path is not None:
        raise InputError(f"pan_path is only used with GeoTIFF input; {path.name} holds the PAN itself")
    if keys is None:  # MHIF layouts (CAVE, Harvard, HISR h5, Hyperion-ALI, mhif_patches arrays): data.hsi.load_mhif
        from pansharp_jax.data.hsi import load_mhif

        scene = load_mhif(path, ratio=ratio, bits=bits, index=index)
        if scene is not None:
            return scene
    return _load_arrays(path, fmt, keys=keys, sensor=sensor, ratio=ratio, bits=bits, index=index)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Any, suffix: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix + ".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())  # a normal file's mode (mkstemp makes 0600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_fused(path: str | os.PathLike[str], fused: Any, scene: Scene) -> Path:
    """Write a fused product next to its scene's metadata, format by extension.

    Args:
      path: ``.tif``/``.tiff`` (GeoTIFF, DN rounded and clipped to [0, 2**bits - 1],
        uint16 for bits <= 16, the PAN's CRS and geotransform from ``scene.georef``),
        ``.mat`` (v5, ``I_F`` = DN float64, unclipped, as the toolbox) or ``.npz``
        (``fused`` float32 on [0, 1] (H, W, C), ``sensor``, ``ratio``, ``bits``).
      fused: (H, W, C) (or (1, H, W, C)) on the [0, 1] scale, PAN-sized.
      scene: the scene it was fused from (bits, sensor, ratio, georef).

    Returns the path written. The write is atomic (temporary file + ``os.replace``).
    """
    path = Path(path)
    a = np.asarray(fused, dtype=np.float64)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[:2] != scene.pan.shape[:2]:
        raise InputError(f"fused must be HxWxC with the PAN size {scene.pan.shape[:2]}, got shape {a.shape}")
    check_finite(a, "fused")
    ext = path.suffix.lower()
    if ext in (".tif", ".tiff"):
        dn = np.clip(np.rint(a * scene.max_dn), 0, scene.max_dn)
        dtype = np.uint16 if scene.bits <= 16 else np.uint32
        write_geotiff(path, dn.astype(dtype), scene.georef, dtype)
    elif ext == ".mat":
        import scipy.io

        _atomic_write(path, lambda fh: scipy.io.savemat(fh, {"I_F": a * scene.max_dn}, format="5"), ".mat")
    elif ext == ".npz":
        payload = {
            "fused": a.astype(np.float32),
            "sensor": np.array(scene.sensor.name),
            "ratio": np.array(scene.ratio),
            "bits": np.array(scene.bits),
        }

        _atomic_write(path, lambda fh: np.savez(fh, **payload), ".npz")
    else:
        raise InputError(f"unsupported output format '{path.suffix}': use .tif, .mat or .npz")
    return path


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``block``-byte chunks (provenance of weights and scenes)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()

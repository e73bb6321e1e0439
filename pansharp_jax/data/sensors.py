"""Sensor facts: MTF gains at Nyquist, radiometric depth, band names, RGB indices.

The MS and PAN Nyquist gains are those of the MATLAB pansharpening toolbox
(``genMTF.m`` / ``MTF_PAN.m``); any sensor the toolbox does not know gets 0.3 for
every MS band and 0.15 for PAN, exactly as the toolbox's ``otherwise`` branch.

Built-in sensors: QB, IKONOS, GeoEye1, WV4, WV2, WV3 (the toolbox's gains), GF2,
Pleiades, Landsat8, Landsat9 and ``generic`` (the toolbox's generic gains).

Design choices where the toolbox is silent (documented, configurable by building
your own :class:`Sensor`):
  * GF2 (GaoFen-2): no published per-band MTF gains at Nyquist were found. The MATLAB
    toolbox, the DLPan-Toolbox (``genMTF.m``) and PanCollection's own Python port
    (``pancollection/common/FS_index/genMTF.py``), whose authors made the GF2
    PanCollection data, have no GF2 case and fall to the generic 0.3; the GF2 scenes of
    LRTCFPan state "MTF gain 0.3 all bands". We keep 0.3 (MS) / 0.15 (PAN), 10 bits.
  * Pleiades and Landsat 8/9 use the same generic gains (0.3 / 0.15).
  * Landsat 8/9 OLI: 6 reflective MS bands (B2..B7 at 30 m) fused with B8 (15 m),
    ratio 2, 12-bit products stored in 16 bits: we take ``bits = 12``.
  * SPOT 6/7 and other sensors are left out: no documented gains were found. Add them
    yourself (below) when you know them.

Adding a sensor: build a :class:`Sensor` and :func:`register_sensor` it, or write a
YAML (or JSON) file and pass its path wherever a sensor name is accepted (``--sensor
spot6.yaml`` on the command line, ``get_sensor("spot6.yaml")``, ``data.sensor`` in a
training config)::

    name: SPOT6
    ms_gnyq: [0.33, 0.33, 0.33, 0.33]   # MTF gain at Nyquist per MS band, in (0, 1)
    pan_gnyq: 0.15                       # PAN gain at Nyquist, in (0, 1)
    bits: 12                             # 8..16; DN = value x (2**bits - 1)
    band_names: [blue, green, red, nir]  # optional: one per MS band (default band1..)
    rgb: [2, 1, 0]                       # optional: 0-based red, green, blue bands
    ratio: 4                             # optional: PAN/MS resolution ratio (default 4)

The registry is the module-level dict :data:`SENSORS` (name -> Sensor), the one piece
of mutable global state here: :func:`register_sensor` adds to it, and :func:`get_sensor`
of a sensor file registers the file's sensor (so that its name, carried in scenes and
checkpoints, resolves later in the same process). Built-in entries are replaced only
with ``overwrite=True``; a sensor file may not redefine a built-in name.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from pansharp_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Sensor:
    """Static facts about one sensor.

    Attributes:
      name: the toolbox's sensor string (``'WV3'``, ``'QB'``...), or ``'generic'``.
      ms_gnyq: MTF gain at Nyquist for each MS band, in band order (unitless, (0, 1)).
      pan_gnyq: MTF gain at Nyquist of the PAN band.
      bits: radiometric depth; DN = value x (2**bits - 1).
      band_names: one name per MS band.
      rgb: 0-based indices of the red, green and blue bands (for true-colour views).
      ratio: PAN/MS resolution ratio of the sensor's products.
    """

    name: str
    ms_gnyq: tuple[float, ...]
    pan_gnyq: float
    bits: int
    band_names: tuple[str, ...]
    rgb: tuple[int, int, int]
    ratio: int = 4

    @property
    def nbands(self) -> int:
        return len(self.ms_gnyq)

    @property
    def max_dn(self) -> float:
        """The largest DN of the sensor's products, ``2**bits - 1`` (2047 for 11 bits)."""
        return float(2**self.bits - 1)

    def gains(self, nbands: int) -> tuple[float, ...]:
        """MS Nyquist gains for an image with ``nbands`` bands.

        Raises InputError when a sensor with fixed band count gets another count; the
        generic sensor repeats its gain for any count (the toolbox's ``otherwise``).
        """
        if self.name == "generic":
            return (self.ms_gnyq[0],) * nbands
        if nbands != self.nbands:
            raise InputError(
                f"wrong band count: sensor {self.name} has {self.nbands} MS bands, the image has {nbands}"
            )
        return self.ms_gnyq


_BGRN = ("blue", "green", "red", "nir")
_WV8 = ("coastal", "blue", "green", "yellow", "red", "red_edge", "nir1", "nir2")

# The sensor registry (name -> Sensor): the built-ins below plus whatever register_sensor adds.
SENSORS: dict[str, Sensor] = {
    s.name: s
    for s in [
        Sensor("QB", (0.34, 0.32, 0.30, 0.22), 0.15, 11, _BGRN, (2, 1, 0)),
        Sensor("IKONOS", (0.26, 0.28, 0.29, 0.28), 0.17, 11, _BGRN, (2, 1, 0)),
        Sensor("GeoEye1", (0.23,) * 4, 0.16, 11, _BGRN, (2, 1, 0)),
        Sensor("WV4", (0.23,) * 4, 0.16, 11, _BGRN, (2, 1, 0)),
        Sensor("WV2", (0.35,) * 7 + (0.27,), 0.11, 11, _WV8, (4, 2, 1)),
        Sensor("WV3", (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315), 0.14, 11, _WV8, (4, 2, 1)),
        Sensor("GF2", (0.3,) * 4, 0.15, 10, _BGRN, (2, 1, 0)),
        Sensor("Pleiades", (0.3,) * 4, 0.15, 12, _BGRN, (2, 1, 0)),
        Sensor(
            "Landsat8",
            (0.3,) * 6,
            0.15,
            12,
            ("blue", "green", "red", "nir", "swir1", "swir2"),
            (2, 1, 0),
            ratio=2,
        ),
        Sensor(
            "Landsat9",
            (0.3,) * 6,
            0.15,
            12,
            ("blue", "green", "red", "nir", "swir1", "swir2"),
            (2, 1, 0),
            ratio=2,
        ),
        Sensor("generic", (0.3,), 0.15, 11, ("band",), (0, 0, 0)),
    ]
}

# Names that ship with the package (never replaced by a sensor file).
BUILTIN_SENSORS: frozenset[str] = frozenset(SENSORS)

_ALIASES = {
    "quickbird": "QB",
    "ikonos": "IKONOS",
    "geoeye1": "GeoEye1",
    "geoeye-1": "GeoEye1",
    "ge1": "GeoEye1",
    "wv4": "WV4",
    "wv2": "WV2",
    "wv3": "WV3",
    "worldview2": "WV2",
    "worldview3": "WV3",
    "worldview4": "WV4",
    "gf2": "GF2",
    "gaofen2": "GF2",
    "pleiades": "Pleiades",
    "landsat8": "Landsat8",
    "landsat9": "Landsat9",
    "l8": "Landsat8",
    "l9": "Landsat9",
    "qb": "QB",
    "none": "generic",
}


SENSOR_FILE_EXTS = (".yaml", ".yml", ".json")
_FIELDS = ("name", "ms_gnyq", "pan_gnyq", "bits", "band_names", "rgb", "ratio")
_REQUIRED = ("name", "ms_gnyq", "pan_gnyq", "bits")


def is_sensor_file(name: str) -> bool:
    """True when ``name`` names a sensor file (ends in .yaml, .yml or .json, any case)."""
    return str(name).strip().lower().endswith(SENSOR_FILE_EXTS)


def get_sensor(name: str | Sensor | None) -> Sensor:
    """Look a sensor up by its toolbox string or a common alias (case-insensitive).

    ``None`` gives the generic sensor. A name ending in ``.yaml``/``.yml``/``.json`` is
    a sensor file: it is read with :func:`load_sensor_file` and its sensor registered
    (see the module docstring). Raises InputError naming the known sensors for an
    unknown name.
    """
    if isinstance(name, Sensor):
        return name
    if name is None:
        return SENSORS["generic"]
    if name in SENSORS:
        return SENSORS[name]
    if is_sensor_file(name):
        return _register_file_sensor(load_sensor_file(name.strip()), name.strip())
    key = name.strip().lower().replace("_", "").replace(" ", "")
    if key in _ALIASES:
        return SENSORS[_ALIASES[key]]
    if key == "generic":
        return SENSORS["generic"]
    for known, sensor in SENSORS.items():  # registered names, case-insensitively
        if known.lower().replace("_", "").replace(" ", "") == key:
            return sensor
    raise InputError(f"unknown sensor {name!r}; known: {', '.join(SENSORS)} (or a sensor file .yaml/.json)")


# ----------------------------------------------------------------------- user sensors


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return _is_number(x) and float(x).is_integer()


def validate_sensor(sensor: Sensor, where: str = "") -> Sensor:
    """Check a sensor's fields; return it. Raises InputError (one line) naming the field.

    Rules: a non-empty name that is not a file name; at least one MS gain; every gain
    (MS and PAN) in (0, 1); ``bits`` an integer in 8..16; one band name per MS gain;
    three ``rgb`` indices in [0, number of MS bands); ``ratio`` an integer >= 2. The
    built-in ``generic`` sensor (1 gain repeated for any band count) passes too.
    """
    at = where or f"sensor {sensor.name!r}"
    name = sensor.name
    if not isinstance(name, str) or not name.strip() or name != name.strip() or is_sensor_file(name) or "/" in name:
        raise InputError(f"{at}: name must be a non-empty word (not a file name), got {name!r}")
    gains = sensor.ms_gnyq
    if not isinstance(gains, tuple) or not gains:
        raise InputError(f"{at}: ms_gnyq must be a non-empty list of gains, got {gains!r}")
    for i, g in enumerate(gains):
        if not _is_number(g) or not 0.0 < float(g) < 1.0:
            raise InputError(f"{at}: ms_gnyq[{i}] = {g!r} is not a number in (0, 1)")
    if not _is_number(sensor.pan_gnyq) or not 0.0 < float(sensor.pan_gnyq) < 1.0:
        raise InputError(f"{at}: pan_gnyq = {sensor.pan_gnyq!r} is not a number in (0, 1)")
    if not _is_int(sensor.bits) or not 8 <= int(sensor.bits) <= 16:
        raise InputError(f"{at}: bits = {sensor.bits!r} is not an integer in 8..16")
    names = sensor.band_names
    if not isinstance(names, tuple) or len(names) != len(gains) or not all(isinstance(b, str) and b for b in names):
        raise InputError(f"{at}: band_names must be {len(gains)} names (one per ms_gnyq gain), got {names!r}")
    rgb = sensor.rgb
    if not isinstance(rgb, tuple) or len(rgb) != 3 or not all(_is_int(i) and 0 <= int(i) < len(gains) for i in rgb):
        raise InputError(f"{at}: rgb must be 3 band indices in [0, {len(gains) - 1}], got {rgb!r}")
    if not _is_int(sensor.ratio) or int(sensor.ratio) < 2:
        raise InputError(f"{at}: ratio = {sensor.ratio!r} is not an integer >= 2")
    return sensor


def register_sensor(sensor: Sensor, *, overwrite: bool = False) -> Sensor:
    """Add ``sensor`` to the registry :data:`SENSORS` under its name; return it.

    The sensor is validated first (:func:`validate_sensor`). Registering a name that is
    already there with different facts raises InputError unless ``overwrite=True``
    (registering an equal sensor again is a no-op). ``generic`` cannot be replaced.
    """
    validate_sensor(sensor)
    old = SENSORS.get(sensor.name)
    if old is not None and old != sensor:
        if sensor.name == "generic":
            raise InputError("the generic sensor cannot be replaced; register your sensor under another name")
        if not overwrite:
            what = "built-in" if sensor.name in BUILTIN_SENSORS else "registered"
            raise InputError(f"sensor {sensor.name} is already {what}; pass overwrite=True to replace it")
    SENSORS[sensor.name] = sensor
    return sensor


def _register_file_sensor(sensor: Sensor, path: str) -> Sensor:
    """Register a sensor read from a file: new names and user sensors are (re)placed; a
    built-in name with other facts is refused."""
    old = SENSORS.get(sensor.name)
    if old is not None and old != sensor and sensor.name in BUILTIN_SENSORS:
        raise InputError(
            f"sensor file {Path(path).name} redefines the built-in sensor {sensor.name}: give it another name"
        )
    return register_sensor(sensor, overwrite=True)


def sensor_to_dict(sensor: Sensor) -> dict[str, Any]:
    """The sensor as plain JSON/YAML types, the fields of a sensor file."""
    return {
        "name": sensor.name,
        "ms_gnyq": [float(g) for g in sensor.ms_gnyq],
        "pan_gnyq": float(sensor.pan_gnyq),
        "bits": int(sensor.bits),
        "band_names": list(sensor.band_names),
        "rgb": [int(i) for i in sensor.rgb],
        "ratio": int(sensor.ratio),
    }


def sensor_from_dict(fields: Any, where: str = "sensor") -> Sensor:
    """A validated :class:`Sensor` from a mapping with the sensor-file fields.

    Required: ``name``, ``ms_gnyq``, ``pan_gnyq``, ``bits``; optional: ``band_names``
    (default ``band1``, ``band2``...), ``rgb`` (default ``[2, 1, 0]``, or ``[0, 0, 0]``
    for fewer than 3 bands), ``ratio`` (default 4). Unknown fields are refused.
    """
    if not isinstance(fields, dict):
        raise InputError(f"{where}: expected a mapping of fields ({', '.join(_FIELDS)}), got {type(fields).__name__}")
    unknown = sorted(str(k) for k in fields if k not in _FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
    gains = fields["ms_gnyq"]
    if _is_number(gains):
        gains = [gains]
    if not isinstance(gains, (list, tuple)):
        raise InputError(f"{where}: ms_gnyq must be a list of gains, got {gains!r}")
    n = len(gains)
    names = fields.get("band_names", [f"band{i + 1}" for i in range(n)])
    rgb = fields.get("rgb", [2, 1, 0] if n >= 3 else [0, 0, 0])
    if not isinstance(names, (list, tuple)):
        raise InputError(f"{where}: band_names must be a list of {n} names, got {names!r}")
    if not isinstance(rgb, (list, tuple)):
        raise InputError(f"{where}: rgb must be a list of 3 band indices, got {rgb!r}")
    sensor = Sensor(
        name=fields["name"] if isinstance(fields["name"], str) else repr(fields["name"]),
        ms_gnyq=tuple(gains),
        pan_gnyq=fields["pan_gnyq"],
        bits=fields["bits"],
        band_names=tuple(names),
        rgb=tuple(rgb),  # type: ignore[arg-type]
        ratio=fields.get("ratio", 4),
    )
    validate_sensor(sensor, where)
    return dataclasses.replace(
        sensor,
        ms_gnyq=tuple(float(g) for g in sensor.ms_gnyq),
        pan_gnyq=float(sensor.pan_gnyq),
        bits=int(sensor.bits),
        rgb=tuple(int(i) for i in sensor.rgb),  # type: ignore[arg-type]
        ratio=int(sensor.ratio),
    )


def load_sensor_file(path: str | os.PathLike[str]) -> Sensor:
    """Read a sensor from a YAML (``.yaml``/``.yml``, needs PyYAML) or JSON file.

    Fields: see the module docstring and :func:`sensor_from_dict`. The sensor is
    validated but NOT registered (:func:`get_sensor` of the path registers it).

    Raises:
      InputError: missing or unreadable file, bad syntax, or an invalid field, one line
        naming the file.
    """
    p = Path(path)
    where = f"sensor file {p.name}"
    if not p.is_file():
        raise InputError(f"sensor file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {where}: {' '.join(str(e).split())}") from None
    if p.suffix.lower() == ".json":
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{where} is not valid JSON: {e.msg} at line {e.lineno}") from None
    else:
        try:
            import yaml
        except ImportError:  # pragma: no cover - PyYAML comes with flax
            raise InputError(f"reading {where} needs PyYAML (pip install pyyaml); or write it as JSON") from None
        try:
            fields = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(f"{where} is not valid YAML: {' '.join(str(e).split())}") from None
    return sensor_from_dict(fields, where)


def save_sensor_file(sensor: Sensor, path: str | os.PathLike[str]) -> Path:
    """Write ``sensor`` as a sensor file (YAML for .yaml/.yml, JSON for .json); return the path."""
    p = Path(path)
    if not is_sensor_file(p.name):
        raise InputError(f"sensor file must end in .yaml, .yml or .json, got {p.name}")
    fields = sensor_to_dict(validate_sensor(sensor))
    if p.suffix.lower() == ".json":
        text = json.dumps(fields, indent=2) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(fields, sort_keys=False, default_flow_style=None)
    p.write_text(text, encoding="utf-8")
    return p

"""Windowed GeoTIFF reading of MS/PAN pairs and Cloud-Optimized GeoTIFF (COG) writing.

Whole satellite scenes (10,000-40,000 PAN pixels a side) never sit in memory whole:

* :class:`GeoTiffPair` opens an MS GeoTIFF and its PAN GeoTIFF (or any raster GDAL reads)
  and reads rectangular windows of either through rasterio, returned float64 on [0, 1]
  in HWC order. Metadata (sensor, bits, ratio, georeference) is resolved once at open,
  with the rules of :func:`pansharp_jax.data.io.load_scene`.
* :class:`CogWriter` takes windows of a product, writes them into a tiled temporary
  GeoTIFF beside the target, and on a clean exit builds overviews (average) and converts
  it with GDAL's COG driver (streaming), then moves it into place atomically.
* :func:`check_output_path` refuses a bad output path before anything is computed.
* :func:`write_fused_cog` writes an in-memory [0, 1] product as a DN COG in row strips.
* :func:`cog_report` / :func:`is_cog` describe a written file (tests, benchmarks).

Scale rules (DN -> [0, 1]), decided per file:
  * integer data are DN, divided by ``max_dn = 2**bits - 1``;
  * float data: decided ONCE at open from a sample (a grid of up to 4x4 windows of at most
    64x64 pixels spread over the file, nodata excluded): a finite maximum <= 1.5 means the
    file is already on [0, 1] (kept), otherwise it is DN (divided by ``max_dn``). This is
    the whole-scene rule of ``data/io.py`` applied to the sample instead of the whole file.
  * pixels equal to a band's nodata value (or NaN when the nodata value is NaN) are read
    as 0 and are not range-checked; :meth:`GeoTiffPair.nodata_mask` says where they are.
  * any other NaN/Inf, or a value outside [0, max_dn] (outside [0, 1] for normalised
    float files), in a window raises InputError naming the file and the window.

Memory: reads hold only the requested window. :class:`CogWriter` holds the window being
written, GDAL's block cache (``GDAL_CACHEMAX``: by default 5% of the RAM, which fills with
written tiles) and, while building overviews, buffers of about 50-80 MB. Keep
``GDAL_CACHEMAX`` above one row of tiles of the product (width x blocksize x bands x bytes
per sample: 40,000 x 512 x 8 x 2 = 330 MB for a 40,000-wide 8-band uint16 product): with
less, overview building decompresses tiles again and again (8x slower at 16 MB for a
4096-wide 8-band product). Neither object is thread-safe: use one per thread.
"""

from __future__ import annotations

import math
import os
import secrets
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from pansharp_jax.data.io import resolve_bits, resolve_ratio, resolve_sensor
from pansharp_jax.data.io_geotiff import _rasterio, check_pair_alignment
from pansharp_jax.data.scene import check_finite
from pansharp_jax.data.sensors import Sensor, get_sensor
from pansharp_jax.errors import InputError

__all__ = [
    "GeoTiffPair",
    "CogWriter",
    "check_output_path",
    "cog_report",
    "is_cog",
    "write_fused_cog",
    "band_descriptions",
    "overview_factors",
]

_NORMALISED_MAX = 1.5  # float files whose sampled maximum is <= this are on [0, 1] (as data/io.py)
_RANGE_TOL = 1e-6  # tolerance on [0, 1] (as data/scene.validate_scene)
_SAMPLE_GRID = 4  # sample windows per axis used to resolve bits / float scale at open
_SAMPLE_SIZE = 64  # side of one sample window (pixels)
# The temporary (pre-COG) file: fast ZSTD level 1 (several times faster than deflate at
# the same size), deflate level 1 when this GDAL has no ZSTD.
_TMP_CODECS = ({"compress": "zstd", "zstd_level": 1}, {"compress": "deflate", "zlevel": 1})
_LOSSLESS = ("none", "deflate", "lzw", "zstd", "lzma", "packbits")
_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


def _open_raster(path: Path, what: str) -> Any:
    rasterio = _rasterio()
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioError as e:
        raise InputError(f"corrupt or unreadable {what} GeoTIFF {path}: {_one_line(e)}") from None


def _georef_of(src: Any) -> dict[str, Any]:
    crs = src.crs.to_wkt() if src.crs is not None else None
    return {"crs": crs, "transform": tuple(float(v) for v in src.transform.to_gdal()), "nodata": src.nodata}


def _valid_mask(a: np.ndarray, nodatavals: Sequence[float | None]) -> np.ndarray | None:
    """(h, w, C) bool, False at each band's nodata value; None when no band has one."""
    if all(v is None for v in nodatavals):
        return None
    valid = np.ones(a.shape, dtype=bool)
    for b, nd in enumerate(nodatavals):
        if nd is None:
            continue
        band = a[..., b]
        valid[..., b] = ~np.isnan(band) if (a.dtype.kind == "f" and math.isnan(nd)) else band != nd
    return valid


def _sample(src: Any) -> np.ndarray:
    """(n, 1, C) raw sample of a raster: a grid of small windows spread over it, nodata set to 0."""
    from rasterio.windows import Window

    h, w = src.height, src.width
    size_r, size_c = min(_SAMPLE_SIZE, h), min(_SAMPLE_SIZE, w)
    rows = sorted({round(i * (h - size_r) / max(_SAMPLE_GRID - 1, 1)) for i in range(_SAMPLE_GRID)})
    cols = sorted({round(j * (w - size_c) / max(_SAMPLE_GRID - 1, 1)) for j in range(_SAMPLE_GRID)})
    parts = []
    for r in rows:
        for c in cols:
            a = np.moveaxis(src.read(window=Window(c, r, size_c, size_r)), 0, -1)
            valid = _valid_mask(a, src.nodatavals)
            if valid is not None:
                a = np.where(valid, a, np.zeros((), a.dtype))
            parts.append(a.reshape(-1, a.shape[-1]))
    return np.concatenate(parts)[:, None, :]


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_window(what: str, r0: Any, r1: Any, c0: Any, c1: Any, h: int, w: int) -> tuple[int, int, int, int]:
    if not all(_is_int(v) for v in (r0, r1, c0, c1)):
        raise InputError(f"{what} window bounds must be integers, got rows {r0!r}:{r1!r}, cols {c0!r}:{c1!r}")
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise InputError(
            f"{what} window rows {r0}:{r1}, cols {c0}:{c1} is not inside the {h}x{w} {what} "
            f"(need 0 <= r0 < r1 <= {h} and 0 <= c0 < c1 <= {w})"
        )
    return int(r0), int(r1), int(c0), int(c1)


class GeoTiffPair:
    """An MS GeoTIFF and its PAN GeoTIFF, opened for windowed reading (pixels stay on disk).

    Open with :meth:`open` (or the constructor, same arguments); use as a context manager
    or call :meth:`close`.

    Attributes:
      height, width: PAN size in pixels.
      ms_height, ms_width: MS size in pixels (= PAN size / ratio).
      ratio: PAN/MS resolution ratio, an integer equal on both axes.
      nbands: number of MS bands.
      dtype: the MS file's storage dtype (``pan_dtype``: the PAN's).
      bits: radiometric depth; ``max_dn = 2**bits - 1`` is the DN of 1.0.
      sensor: the resolved :class:`~pansharp_jax.data.sensors.Sensor`.
      assumed: what was guessed rather than given or read (``sensor``, ``bits``, ``ratio``
        -> how), as :attr:`pansharp_jax.data.scene.Scene.assumed`.
      georef: the PAN's ``{"crs": WKT or None, "transform": GDAL 6-tuple, "nodata": value or None}``.
      name: the MS file stem; ms_path, pan_path: the two paths.
      ms_normalised, pan_normalised: whether the file is float data already on [0, 1].
    """

    def __init__(
        self,
        ms_path: str | os.PathLike[str],
        pan_path: str | os.PathLike[str],
        *,
        sensor: str | Sensor | None = None,
        bits: int | None = None,
        ratio: int | None = None,
    ) -> None:
        self.ms_path = Path(ms_path)
        self.pan_path = Path(pan_path)
        self._ms: Any = None
        self._pan: Any = None
        self._ms = _open_raster(self.ms_path, "MS")
        try:
            self._pan = _open_raster(self.pan_path, "PAN")
            self._setup(sensor, bits, ratio)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls,
        ms_path: str | os.PathLike[str],
        pan_path: str | os.PathLike[str],
        *,
        sensor: str | Sensor | None = None,
        bits: int | None = None,
        ratio: int | None = None,
    ) -> GeoTiffPair:
        """Open an MS/PAN GeoTIFF pair without reading its pixels (only small samples).

        Args:
          ms_path: the multi-band MS GeoTIFF (low resolution).
          pan_path: the one-band PAN GeoTIFF.
          sensor, bits, ratio: overrides; otherwise the sensor comes from the file names,
            bits from the dtype/sensor and ratio from the sizes (rules of ``load_scene``).

        Raises:
          InputError: missing/unreadable file, PAN with more than one band, CRS mismatch or
            misaligned extents (``check_pair_alignment``), a ratio that is not an integer
            equal on both axes, a band count the sensor does not have, bad bits.
        """
        return cls(ms_path, pan_path, sensor=sensor, bits=bits, ratio=ratio)

    def _setup(self, sensor: Any, bits: Any, ratio: Any) -> None:
        ms, pan = self._ms, self._pan
        ms_name, pan_name = self.ms_path.name, self.pan_path.name
        if pan.count != 1:
            raise InputError(f"PAN GeoTIFF {pan_name} must have one band, it has {pan.count}")
        self.height, self.width = int(pan.height), int(pan.width)
        self.ms_height, self.ms_width = int(ms.height), int(ms.width)
        self.nbands = int(ms.count)
        self.dtype = np.dtype(ms.dtypes[0])
        self.pan_dtype = np.dtype(pan.dtypes[0])
        if any(np.dtype(d) != self.dtype for d in ms.dtypes):
            raise InputError(f"MS GeoTIFF {ms_name} mixes band data types {sorted(set(ms.dtypes))}")
        self.georef = _georef_of(pan)
        check_pair_alignment(
            ms_name, _georef_of(ms), (self.ms_height, self.ms_width), pan_name, self.georef, (self.height, self.width)
        )
        self.sensor, sensor_note = resolve_sensor(sensor, None, (self.ms_path, self.pan_path))
        self.sensor.gains(self.nbands)  # raises on a band count the sensor does not have
        ms_sample, pan_sample = _sample(ms), _sample(pan)
        self.bits, bits_note = resolve_bits(bits, None, self.sensor, [ms_sample, pan_sample])
        r, ratio_note = resolve_ratio(ratio, None, (self.ms_height, self.ms_width), (self.height, self.width), self.sensor)
        # what was guessed rather than given or read, as Scene.assumed (the CLI says it)
        notes = {"sensor": sensor_note, "bits": bits_note, "ratio": ratio_note}
        self.assumed = {k: v for k, v in notes.items() if v is not None}
        if (self.height, self.width) != (r * self.ms_height, r * self.ms_width):
            raise InputError(
                f"PAN {pan_name} is {self.height}x{self.width} and MS {ms_name} is {self.ms_height}x{self.ms_width}: "
                f"the PAN size must be the MS size times one integer ratio on both axes (ratio {r})"
            )
        self.ratio = r
        self.ms_normalised = self.dtype.kind == "f" and _finite_max(ms_sample) <= _NORMALISED_MAX
        self.pan_normalised = self.pan_dtype.kind == "f" and _finite_max(pan_sample) <= _NORMALISED_MAX
        self.name = self.ms_path.stem

    @property
    def max_dn(self) -> float:
        """``2**bits - 1``: the DN of value 1.0 (2047 for 11-bit data)."""
        return float(2**self.bits - 1)

    # -- reading -----------------------------------------------------------------------

    def _read_raw(self, src: Any, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        from rasterio.windows import Window

        rasterio = _rasterio()
        if src is None or src.closed:
            raise InputError(f"GeoTiffPair {self.name} is closed")
        try:
            return np.moveaxis(src.read(window=Window(c0, r0, c1 - c0, r1 - r0)), 0, -1)
        except rasterio.errors.RasterioError as e:
            raise InputError(
                f"cannot read {Path(src.name).name} window rows {r0}:{r1}, cols {c0}:{c1}: {_one_line(e)}"
            ) from None

    def _read_unit(self, which: str, src: Any, normalised: bool, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        raw = self._read_raw(src, r0, r1, c0, c1)
        out = raw.astype(np.float64, order="C")
        valid = _valid_mask(raw, src.nodatavals)
        if valid is not None:
            out[~valid] = 0.0
        where = f"{which} {Path(src.name).name} window rows {r0}:{r1}, cols {c0}:{c1}"
        if raw.dtype.kind == "f":
            bad = ~np.isfinite(out)
            if bad.any():
                raise InputError(f"{where} contains {int(bad.sum())} NaN/Inf values")
        if not normalised:
            out /= self.max_dn
        lo, hi = float(out.min()), float(out.max())
        if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
            raise InputError(
                f"{where} has values outside the DN range [0, {self.max_dn:g}]: "
                f"found [{lo * self.max_dn:g}, {hi * self.max_dn:g}] DN (bits={self.bits})"
            )
        return out

    def read_pan(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """PAN rows ``r0:r1``, columns ``c0:c1`` (PAN pixels) as (r1-r0, c1-c0, 1) float64 on [0, 1].

        Raises InputError for a window not inside the PAN, NaN/Inf, or values above max_dn.
        """
        r0, r1, c0, c1 = _check_window("PAN", r0, r1, c0, c1, self.height, self.width)
        return self._read_unit("PAN", self._pan, self.pan_normalised, r0, r1, c0, c1)

    def read_lrms(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """MS rows ``r0:r1``, columns ``c0:c1`` (MS pixels) as (r1-r0, c1-c0, nbands) float64 on [0, 1].

        Raises InputError for a window not inside the MS, NaN/Inf, or values above max_dn.
        """
        r0, r1, c0, c1 = _check_window("MS", r0, r1, c0, c1, self.ms_height, self.ms_width)
        return self._read_unit("MS", self._ms, self.ms_normalised, r0, r1, c0, c1)

    def read_lrms_all(self) -> np.ndarray:
        """The whole MS, (ms_height, ms_width, nbands) float64 on [0, 1] (1/ratio**2 of the PAN's pixels)."""
        return self.read_lrms(0, self.ms_height, 0, self.ms_width)

    def nodata_mask(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """(r1-r0, c1-c0) bool on the PAN grid: True where the PAN window is nodata.

        With a PAN nodata value set: True where the PAN equals it (NaN matches NaN).
        Without one: True where the PAN is 0 and every MS band is 0 at the MS pixel
        covering that PAN pixel.
        """
        r0, r1, c0, c1 = _check_window("PAN", r0, r1, c0, c1, self.height, self.width)
        pan = self._read_raw(self._pan, r0, r1, c0, c1)[..., 0]
        nd = self._pan.nodatavals[0]
        if nd is not None:
            return np.isnan(pan) if (pan.dtype.kind == "f" and math.isnan(nd)) else pan == nd
        r = self.ratio
        m0, m1, n0, n1 = r0 // r, -(-r1 // r), c0 // r, -(-c1 // r)
        ms_zero = (self._read_raw(self._ms, m0, m1, n0, n1) == 0).all(axis=-1)
        up = np.repeat(np.repeat(ms_zero, r, axis=0), r, axis=1)
        dr, dc = r0 - m0 * r, c0 - n0 * r
        return (pan == 0) & up[dr : dr + (r1 - r0), dc : dc + (c1 - c0)]

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Close both files (idempotent)."""
        for src in (self._ms, self._pan):
            if src is not None and not src.closed:
                src.close()

    def __enter__(self) -> GeoTiffPair:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"GeoTiffPair({self.name!r}, PAN {self.height}x{self.width}, MS {self.ms_height}x{self.ms_width}x"
            f"{self.nbands}, ratio {self.ratio}, {self.sensor.name}, {self.bits} bits)"
        )


def _finite_max(a: np.ndarray) -> float:
    fin = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    return float(fin.max()) if fin.size else 0.0


# -- output paths -----------------------------------------------------------------------


def check_output_path(
    path: str | os.PathLike[str], *, overwrite: bool, inputs: Sequence[str | os.PathLike[str]] = ()
) -> Path:
    """Refuse a bad output path before anything is computed; return it as a Path.

    Raises InputError (one line) when: the path is an existing directory; its parent
    folder does not exist (nothing is created: "create it first"); a parent is a file;
    the parent folder is not writable; the path is one of ``inputs`` (same file, or the
    same resolved path when either does not exist) -- a product never writes over an
    input; the path exists and ``overwrite`` is False.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"output {p} is a directory: give a file name")
    parent = p.parent
    if not parent.is_dir():
        if parent.exists():
            raise InputError(f"output folder {parent} is a file, not a folder")
        for anc in parent.parents:
            if anc.exists() and not anc.is_dir():
                raise InputError(f"output folder {parent} cannot exist: {anc} is a file, not a folder")
        raise InputError(f"output folder {parent} does not exist: create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output folder {parent} is not writable")
    for inp in inputs:
        q = Path(inp)
        same = os.path.samefile(p, q) if (p.exists() and q.exists()) else p.resolve() == q.resolve()
        if same:
            raise InputError(f"output {p} is the input {q}: a product never writes over an input")
    if p.exists() and not overwrite:
        raise InputError(f"output {p} exists: pass --overwrite to replace it")
    return p


# -- COG writing ------------------------------------------------------------------------


def overview_factors(height: int, width: int, blocksize: int) -> list[int]:
    """Overview decimation factors 2, 4, 8, ... until the smallest overview side is < blocksize.

    Empty when the image's smallest side is already below ``blocksize``.
    """
    factors: list[int] = []
    f = 1
    while min(-(-height // f), -(-width // f)) >= blocksize:
        f *= 2
        factors.append(f)
    return factors


def _profile_georef(georef: Mapping[str, Any] | None) -> dict[str, Any]:
    rasterio = _rasterio()
    from affine import Affine  # installed with rasterio

    out: dict[str, Any] = {}
    if not georef:
        return out
    if not isinstance(georef, Mapping):
        raise InputError(f"georef must be a dict with 'crs' and 'transform', got {type(georef).__name__}")
    if georef.get("crs") is not None:
        try:
            out["crs"] = rasterio.crs.CRS.from_user_input(georef["crs"])
        except Exception as e:
            raise InputError(f"invalid CRS in georef: {_one_line(e)}") from None
    t = georef.get("transform")
    if t is not None:
        if isinstance(t, Affine):
            out["transform"] = t
        else:
            try:
                vals = [float(v) for v in t]
            except (TypeError, ValueError):
                vals = []
            if len(vals) != 6 or not all(math.isfinite(v) for v in vals):
                raise InputError(f"georef transform must be 6 finite numbers (GDAL order), got {t!r}")
            out["transform"] = Affine.from_gdal(*vals)
    return out


class CogWriter:
    """Write a large raster window by window and finish it as a Cloud-Optimized GeoTIFF.

    Use as a context manager::

        with CogWriter(out, height=H, width=W, bands=C, dtype="uint16", georef=pair.georef) as w:
            for r0, c0, block in windows:       # block: (h, w, C) (or (h, w) for one band)
                w.write(r0, c0, block)

    On entry the path is checked (:func:`check_output_path`) and a tiled temporary GeoTIFF
    (hidden name ``.<name>.<random>.tmp.tif`` in the target folder, ZSTD level 1) is created. ``write``
    puts a window into it (memory: the window plus GDAL's block cache). On a clean exit,
    overviews are built with average resampling (factors :func:`overview_factors`; nodata
    pixels are left out of the averages), GDAL's COG driver converts the file (streaming,
    ``BLOCKSIZE``/``COMPRESS`` as given, predictor on), and the result replaces ``path``
    atomically with ordinary file permissions (0o666 & ~umask). On an exception every
    temporary file is removed and nothing is left behind. Pixels never written read as 0
    (or the nodata value when given).

    Args:
      path: the output .tif.
      height, width, bands: raster size (pixels) and band count.
      dtype: storage dtype (uint8, uint16, int16, uint32, int32, float32, float64).
      georef: ``{"crs": ..., "transform": GDAL 6-tuple, ...}`` of the PAN grid, or None for
        an ungeoreferenced file. Its ``"nodata"`` is NOT used: pass ``nodata``.
      nodata: the product's nodata value, or None.
      band_descriptions: one string per band (e.g. :func:`band_descriptions`).
      tags: metadata written into the file (keys and values str; values are str()-ed).
      blocksize: tile side (a multiple of 16).
      compress: lossless codec: none, deflate, lzw, zstd, lzma or packbits.
      overwrite: replace an existing file.
      inputs: input paths the product must never overwrite.
      num_threads: threads GDAL uses to build overviews and compress the COG
        ("ALL_CPUS" or a number; 1 for a single thread).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        height: int,
        width: int,
        bands: int,
        dtype: Any,
        georef: Mapping[str, Any] | None,
        nodata: float | None = None,
        band_descriptions: Sequence[str] | None = None,
        tags: Mapping[str, Any] | None = None,
        blocksize: int = 512,
        compress: str = "deflate",
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike[str]] = (),
        num_threads: int | str = "ALL_CPUS",
    ) -> None:
        for nm, v in (("height", height), ("width", width), ("bands", bands)):
            if not _is_int(v) or v < 1:
                raise InputError(f"CogWriter {nm} must be a positive integer, got {v!r}")
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt is None or dt.name not in _DTYPES:
            raise InputError(f"CogWriter dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if not _is_int(blocksize) or blocksize < 16 or blocksize % 16:
            raise InputError(f"blocksize must be a positive multiple of 16, got {blocksize!r}")
        comp = str(compress).lower()
        if comp not in _LOSSLESS:
            raise InputError(f"compress must be one of {', '.join(_LOSSLESS)}, got {compress!r}")
        if band_descriptions is not None:
            band_descriptions = [str(d) for d in band_descriptions]
            if len(band_descriptions) != bands:
                raise InputError(f"{len(band_descriptions)} band descriptions given for {bands} bands")
        if tags is not None and not all(isinstance(k, str) and k for k in tags):
            raise InputError("tags must be a dict with non-empty string keys")
        if nodata is not None and not isinstance(nodata, (int, float, np.integer, np.floating)):
            raise InputError(f"nodata must be a number or None, got {nodata!r}")
        self.path = Path(path)
        self.height, self.width, self.bands = int(height), int(width), int(bands)
        self.dtype = dt
        self.georef = georef
        self._geo = _profile_georef(georef)  # validates before any file is created
        self.nodata = nodata
        self.band_descriptions = band_descriptions
        self.tags = {k: str(v) for k, v in (tags or {}).items()}
        self.blocksize = int(blocksize)
        self.compress = comp
        self.overwrite = bool(overwrite)
        self.inputs = tuple(inputs)
        if not ((_is_int(num_threads) and num_threads >= 1) or num_threads == "ALL_CPUS"):
            raise InputError(f"num_threads must be a positive integer or 'ALL_CPUS', got {num_threads!r}")
        self.num_threads = str(num_threads)
        self._dst: Any = None
        self._tmp_codec = "ZSTD"
        self._token: str | None = None

    # temporary names share one prefix so that cleanup finds every file GDAL may add
    def _tmp(self, kind: str) -> Path:
        return self.path.parent / f".{self.path.name}.{self._token}.{kind}.tif"

    def __enter__(self) -> CogWriter:
        rasterio = _rasterio()
        self.path = check_output_path(self.path, overwrite=self.overwrite, inputs=self.inputs)
        self._token = secrets.token_hex(6)
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "height": self.height,
            "width": self.width,
            "count": self.bands,
            "dtype": self.dtype.name,
            "tiled": True,
            "blockxsize": self.blocksize,
            "blockysize": self.blocksize,
            "bigtiff": "IF_SAFER",
            "interleave": "pixel",
            **self._geo,
        }
        if self.nodata is not None:
            profile["nodata"] = self.nodata
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                for i, codec in enumerate(_TMP_CODECS):
                    try:
                        self._dst = rasterio.open(self._tmp("tmp"), "w", **profile, **codec)
                        self._tmp_codec = codec["compress"].upper()
                        break
                    except rasterio.errors.RasterioError:
                        if i == len(_TMP_CODECS) - 1:
                            raise
            if self.band_descriptions:
                for i, d in enumerate(self.band_descriptions, start=1):
                    self._dst.set_band_description(i, d)
            if self.tags:
                self._dst.update_tags(**self.tags)
        except BaseException:
            self._abort()
            raise
        return self

    def write(self, r0: int, c0: int, array_hwc: Any) -> None:
        """Write ``array_hwc`` ((h, w, bands), or (h, w) for one band) with its top-left at (r0, c0).

        Values are stored as the writer's dtype: arrays of another dtype must hold values
        that dtype represents exactly (integral and in range for integer dtypes), else
        InputError. The window must lie inside the raster.
        """
        if self._dst is None:
            raise InputError("CogWriter.write called outside its 'with' block")
        a = np.asarray(array_hwc)
        if a.ndim == 2 and self.bands == 1:
            a = a[..., None]
        if a.ndim != 3 or a.shape[2] != self.bands:
            raise InputError(f"CogWriter.write needs an (h, w, {self.bands}) array, got shape {a.shape}")
        h, w = a.shape[:2]
        if not (_is_int(r0) and _is_int(c0)) or h < 1 or w < 1:
            raise InputError(f"CogWriter.write needs integer r0, c0 and a non-empty array, got {r0!r}, {c0!r}, {a.shape}")
        if r0 < 0 or c0 < 0 or r0 + h > self.height or c0 + w > self.width:
            raise InputError(
                f"window rows {r0}:{r0 + h}, cols {c0}:{c0 + w} is not inside the {self.height}x{self.width} product"
            )
        a = self._cast(a)
        from rasterio.windows import Window

        self._dst.write(np.ascontiguousarray(np.moveaxis(a, -1, 0)), window=Window(int(c0), int(r0), w, h))

    def _cast(self, a: np.ndarray) -> np.ndarray:
        if a.dtype == self.dtype:
            return a
        if self.dtype.kind in "iu":
            if a.dtype.kind == "f":
                if not np.isfinite(a).all() or (np.rint(a) != a).any():
                    raise InputError(f"values written as {self.dtype.name} must be finite whole numbers (DN)")
            if a.dtype.kind not in "biuf":
                raise InputError(f"cannot write {a.dtype} data as {self.dtype.name}")
            info = np.iinfo(self.dtype)
            lo, hi = a.min(), a.max()
            if lo < info.min or hi > info.max:
                raise InputError(f"values [{lo}, {hi}] do not fit {self.dtype.name} [{info.min}, {info.max}]")
        elif a.dtype.kind not in "biuf":
            raise InputError(f"cannot write {a.dtype} data as {self.dtype.name}")
        return a.astype(self.dtype)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._finish()
        finally:
            self._abort()  # removes whatever temporary file is still there

    def _finish(self) -> None:
        rasterio = _rasterio()
        import rasterio.shutil
        from rasterio.enums import Resampling

        factors = overview_factors(self.height, self.width, self.blocksize)
        if factors:
            with rasterio.Env(COMPRESS_OVERVIEW=self._tmp_codec, GDAL_NUM_THREADS=self.num_threads):
                self._dst.build_overviews(factors, Resampling.average)
        self._dst.close()
        self._dst = None
        opts: dict[str, str] = {
            "COMPRESS": self.compress.upper(),
            "BLOCKSIZE": str(self.blocksize),
            "BIGTIFF": "IF_SAFER",
            "OVERVIEWS": "FORCE_USE_EXISTING" if factors else "NONE",
            "NUM_THREADS": self.num_threads,
        }
        if self.compress in ("deflate", "lzw", "zstd", "lzma"):
            opts["PREDICTOR"] = "YES"
        cog = self._tmp("cog")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            rasterio.shutil.copy(self._tmp("tmp"), cog, driver="COG", **opts)
        os.replace(cog, self.path)

    def _abort(self) -> None:
        if self._dst is not None:
            try:
                self._dst.close()
            except Exception:
                pass  # the file is deleted below
            self._dst = None
        if self._token is None:
            return
        prefix = f".{self.path.name}.{self._token}."
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return
        for n in names:
            if n.startswith(prefix):
                try:
                    os.unlink(self.path.parent / n)
                except OSError:
                    pass


def write_fused_cog(
    path: str | os.PathLike[str],
    fused_hwc_unit: Any,
    *,
    georef: Mapping[str, Any] | None,
    bits: int,
    band_descriptions: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    nodata: float | None = None,
    blocksize: int = 512,
    compress: str = "deflate",
    inputs: Sequence[str | os.PathLike[str]] = (),
    num_threads: int | str = "ALL_CPUS",
) -> Path:
    """Write an in-memory product on [0, 1] as a DN Cloud-Optimized GeoTIFF; return the path.

    Args:
      path: the output .tif (checked by :func:`check_output_path`).
      fused_hwc_unit: (H, W, C) (or (H, W), or (1, H, W, C)) on the [0, 1] scale.
      georef: the PAN's georeference (CRS, GDAL transform), or None.
      bits: radiometric depth; DN = clip(rint(x * (2**bits - 1)), 0, 2**bits - 1),
        stored as uint16 for bits <= 16, else uint32.
      band_descriptions, tags, overwrite, nodata, blocksize, compress, inputs,
        num_threads: as :class:`CogWriter`.

    Written in row strips of ``blocksize`` rows (the DN copy is one strip at a time).
    Raises InputError for a bad shape, NaN/Inf values or a bad path.
    """
    if not _is_int(bits) or not 1 <= bits <= 32:
        raise InputError(f"bits must be an integer in [1, 32], got {bits!r}")
    a = np.asarray(fused_hwc_unit)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or min(a.shape) < 1:
        raise InputError(f"fused product must be HxWxC, got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise InputError(f"fused product must be numeric, got dtype {a.dtype}")
    check_finite(a, "fused")
    max_dn = float(2**bits - 1)
    dtype = np.uint16 if bits <= 16 else np.uint32
    h, w, c = a.shape
    with CogWriter(
        path, height=h, width=w, bands=c, dtype=dtype, georef=georef, nodata=nodata,
        band_descriptions=band_descriptions, tags=tags, blocksize=blocksize, compress=compress,
        overwrite=overwrite, inputs=inputs, num_threads=num_threads,
    ) as out:  # fmt: skip
        for r0 in range(0, h, blocksize):
            strip = np.asarray(a[r0 : r0 + blocksize], dtype=np.float64)
            out.write(r0, 0, np.clip(np.rint(strip * max_dn), 0, max_dn).astype(dtype))
    return Path(path)


def band_descriptions(sensor: str | Sensor | None, nbands: int) -> list[str]:
    """One description per band: the sensor's band names when it has ``nbands`` of them, else "band 1"..."""
    s = get_sensor(sensor)
    if s.name != "generic" and len(s.band_names) == nbands:
        return list(s.band_names)
    return [f"band {i + 1}" for i in range(nbands)]


# -- inspection -------------------------------------------------------------------------


def cog_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe a GeoTIFF's structure and georeference.

    Returns a dict: ``driver``, ``layout`` (IMAGE_STRUCTURE LAYOUT, "COG" for a COG, else
    None), ``tiled``, ``block_shape`` (rows, cols), ``overview_factors`` (band 1),
    ``compression`` (e.g. "DEFLATE" or None), ``height``, ``width``, ``count``, ``dtype``,
    ``crs`` (WKT or None), ``transform`` (GDAL 6-tuple), ``nodata``, ``band_descriptions``
    (None where unset) and ``tags`` (default metadata domain).
    """
    p = Path(path)
    src = _open_raster(p, "product")
    try:
        struct = src.tags(ns="IMAGE_STRUCTURE")
        bh, bw = (int(v) for v in src.block_shapes[0])
        # a striped TIFF has full-width blocks; tiles are square multiples of 16 here
        tiled = bool(src.profile.get("tiled", bw < src.width or (bh == bw and bw % 16 == 0 and bh < src.height)))
        return {
            "driver": src.driver,
            "layout": struct.get("LAYOUT"),
            "tiled": tiled,
            "block_shape": (bh, bw),
            "overview_factors": list(src.overviews(1)),
            "compression": struct.get("COMPRESSION"),
            "height": int(src.height),
            "width": int(src.width),
            "count": int(src.count),
            "dtype": src.dtypes[0],
            "crs": src.crs.to_wkt() if src.crs is not None else None,
            "transform": tuple(float(v) for v in src.transform.to_gdal()),
            "nodata": src.nodata,
            "band_descriptions": list(src.descriptions),
            "tags": dict(src.tags()),
        }
    finally:
        src.close()


def is_cog(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a tiled GeoTIFF that GDAL recognises as COG-laid-out (LAYOUT=COG)."""
    r = cog_report(path)
    return r["layout"] == "COG" and r["tiled"]

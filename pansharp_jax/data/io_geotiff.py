"""GeoTIFF read/write through rasterio (optional dependency: ``pip install pansharp_jax[geo]``).

rasterio (GDAL) is used because it keeps the coordinate reference system exactly (any
CRS, not only EPSG codes) and the affine geotransform. It is imported lazily: without
it, the rest of the library works and only GeoTIFF calls raise an InputError saying
how to install it.

Georeference dicts (``Scene.georef``) look like::

    {"crs": "<WKT string>" | None, "transform": (x0, dx, rx, y0, ry, dy), "nodata": float | None}

``transform`` is in GDAL geotransform order: x of the top-left corner, pixel width,
row rotation, y of the top-left corner, column rotation, pixel height (negative for
north-up images).

MS/PAN pairs are checked by :func:`check_pair_alignment` (same CRS, overlapping extents,
extents equal within one MS pixel) before they are fused; the whole-scene loader and the
windowed product reader both call it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.data.io_mat import check_declared_size
from pansharp_jax.errors import InputError

_INSTALL_HINT = "GeoTIFF support needs rasterio: pip install pansharp_jax[geo] (or pip install rasterio)"
# GDAL's default geotransform, reported for TIFFs that carry no georeference at all.
_IDENTITY = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _rasterio() -> Any:
    try:
        import rasterio
    except ImportError:
        raise InputError(_INSTALL_HINT) from None
    return rasterio


def _same_crs(a: Any, b: Any) -> bool:
    """Whether two CRS descriptions (WKT, ``EPSG:n``, PROJ...) name the same CRS."""
    if a == b:
        return True
    try:
        from rasterio.crs import CRS

        return bool(CRS.from_user_input(a) == CRS.from_user_input(b))
    except ImportError:
        return False  # different strings and nothing to compare them with
    except Exception as e:
        raise InputError(f"unreadable CRS in a GeoTIFF georeference: {' '.join(str(e).split())[:200]}") from None


def _transform(georef: dict[str, Any] | None) -> tuple[float, ...] | None:
    """The GDAL 6-tuple of a georef, or None when absent/ungeoreferenced (identity, no CRS)."""
    if not georef or georef.get("transform") is None:
        return None
    t = georef["transform"]
    try:
        vals = tuple(float(v) for v in (t.to_gdal() if hasattr(t, "to_gdal") else t))
    except (TypeError, ValueError):
        raise InputError(f"georef transform must be 6 numbers (GDAL order), got {t!r}") from None
    if len(vals) != 6 or not all(np.isfinite(vals)):
        raise InputError(f"georef transform must be 6 finite numbers (GDAL order), got {t!r}")
    if vals == _IDENTITY and georef.get("crs") is None:
        return None
    return vals


def pixel_bounds(transform: tuple[float, ...], hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of an ``hw = (rows, cols)`` raster with a GDAL geotransform.

    Map units of the CRS (metres for UTM); the bounds enclose all four corners, so
    rotated grids and south-up grids (positive pixel height) are handled.
    """
    x0, dx, rx, y0, ry, dy = transform
    h, w = hw
    xs = [x0 + c * dx + r * rx for r in (0, h) for c in (0, w)]
    ys = [y0 + c * ry + r * dy for r in (0, h) for c in (0, w)]
    return min(xs), min(ys), max(xs), max(ys)


def check_pair_alignment(
    ms_name: str,
    ms_georef: dict,
    ms_hw: tuple[int, int],
    pan_name: str,
    pan_georef: dict,
    pan_hw: tuple[int, int],
) -> None:
    """Refuse an MS/PAN GeoTIFF pair that does not cover the same ground.

    Args:
      ms_name, pan_name: file names for the messages.
      ms_georef, pan_georef: georeference dicts (see module docstring); ``None`` or
        missing parts skip the checks that need them.
      ms_hw, pan_hw: raster sizes (rows, cols) in pixels.

    Checks, in order: the CRSs are equal (when both are given); the extents (map units,
    from transform and size) overlap; every edge of the two extents agrees within one MS
    pixel (the MS pixel width for left/right, height for top/bottom). A transform equal
    to GDAL's identity with no CRS counts as "not georeferenced" and is skipped.

    Raises:
      InputError: one line naming both files and, for misaligned extents, by how much.
    """
    ms_crs = (ms_georef or {}).get("crs")
    pan_crs = (pan_georef or {}).get("crs")
    if ms_crs and pan_crs and not _same_crs(ms_crs, pan_crs):
        raise InputError(f"MS and PAN GeoTIFFs have different CRS: {ms_name} vs {pan_name}")
    mt, pt = _transform(ms_georef), _transform(pan_georef)
    if mt is None or pt is None:
        return
    mb, pb = pixel_bounds(mt, ms_hw), pixel_bounds(pt, pan_hw)
    if mb[2] <= pb[0] or pb[2] <= mb[0] or mb[3] <= pb[1] or pb[3] <= mb[1]:
        raise InputError(
            f"MS and PAN GeoTIFFs do not overlap: {ms_name} covers x [{mb[0]:g}, {mb[2]:g}] y [{mb[1]:g}, {mb[3]:g}], "
            f"{pan_name} covers x [{pb[0]:g}, {pb[2]:g}] y [{pb[1]:g}, {pb[3]:g}]"
        )
    px = float(np.hypot(mt[1], mt[4]))  # MS pixel width (map units)
    py = float(np.hypot(mt[2], mt[5]))  # MS pixel height
    dx = max(abs(mb[0] - pb[0]), abs(mb[2] - pb[2]))
    dy = max(abs(mb[1] - pb[1]), abs(mb[3] - pb[3]))
    tol = 1e-9 * max(1.0, *(abs(v) for v in mb + pb))  # float noise in large coordinates
    if dx > px + tol or dy > py + tol:
        raise InputError(
            f"MS and PAN GeoTIFF extents differ by more than one MS pixel ({px:g} x {py:g}): "
            f"{ms_name} vs {pan_name} differ by up to {dx:g} in x and {dy:g} in y (map units)"
        )


def read_geotiff(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a (Geo)TIFF as an (H, W, bands) array, dtype as stored, plus its georeference.

    Returns ``(array, georef)`` with ``georef = {"crs": WKT or None, "transform": GDAL
    6-tuple, "nodata": value or None}``. The declared size is checked against the
    readers' limits (``io_mat.check_declared_size``) before any pixel is read. Raises
    InputError for a missing, damaged, oversized or complex-valued file or when rasterio
    is not installed.
    """
    rasterio = _rasterio()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning and GDAL's complaints on damaged files
            with rasterio.open(path) as src:
                # GDAL's complex integer types have no NumPy name: count them as complex64
                dtypes = {np.dtype(np.complex64 if str(d).startswith("complex_int") else d) for d in src.dtypes}
                if any(d.kind not in "biuf" for d in dtypes):
                    raise InputError(
                        f"{path.name} has pixel type {', '.join(src.dtypes)}: expected real numbers (integer or float)"
                    )
                itemsize = max(d.itemsize for d in dtypes) if dtypes else 1
                check_declared_size(f"GeoTIFF {path.name}", (src.count, src.height, src.width), itemsize)
                data = src.read()  # bands x H x W
                crs = src.crs.to_wkt() if src.crs is not None else None
                georef = {"crs": crs, "transform": tuple(src.transform.to_gdal()), "nodata": src.nodata}
    except InputError:
        raise
    except MemoryError:  # a guard failed: let it show
        raise
    except Exception as e:  # RasterioError, CPLE_* errors and more on damaged files
        raise InputError(f"corrupt or unreadable GeoTIFF {path}: {' '.join(str(e).split())[:200]}") from None
    return np.ascontiguousarray(np.moveaxis(data, 0, -1)), georef


def write_geotiff(
    path: str | os.PathLike[str],
    array: np.ndarray,
    georef: dict[str, Any] | None,
    dtype: Any = None,
) -> None:
    """Write an (H, W) or (H, W, bands) array to a GeoTIFF, atomically.

    Values are written as given, cast to ``dtype`` (default: the array's dtype; the
    caller rounds/clips DN first). ``georef`` (see module docstring) sets the CRS and
    geotransform; ``None`` writes an ungeoreferenced TIFF. The file is written to a
    temporary name in the same folder and moved into place with ``os.replace``.
    """
    rasterio = _rasterio()
    from affine import Affine  # installed with rasterio

    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise InputError(f"GeoTIFF array must be HxW or HxWxC, got shape {a.shape}")
    dt = np.dtype(dtype) if dtype is not None else a.dtype
    path = Path(path)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": a.shape[0],
        "width": a.shape[1],
        "count": a.shape[2],
        "dtype": dt.name,
        "compress": "deflate",
    }
    if a.shape[2] > 1:
        profile["interleave"] = "pixel"
    if georef:
        if georef.get("crs") is not None:
            try:
                profile["crs"] = rasterio.crs.CRS.from_user_input(georef["crs"])
            except Exception as e:
                raise InputError(f"invalid CRS in georef: {' '.join(str(e).split())[:200]}") from None
        if georef.get("transform") is not None:
            t = georef["transform"]
            profile["transform"] = t if isinstance(t, Affine) else Affine.from_gdal(*[float(v) for v in t])
        if georef.get("nodata") is not None:
            profile["nodata"] = georef["nodata"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tif.tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(np.moveaxis(a.astype(dt, copy=False), -1, 0))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

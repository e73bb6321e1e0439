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
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.errors import InputError

_INSTALL_HINT = "GeoTIFF support needs rasterio: pip install pansharp_jax[geo] (or pip install rasterio)"


def _rasterio() -> Any:
    try:
        import rasterio
    except ImportError:
        raise InputError(_INSTALL_HINT) from None
    return rasterio


def read_geotiff(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a (Geo)TIFF as an (H, W, bands) array, dtype as stored, plus its georeference.

    Returns ``(array, georef)`` with ``georef = {"crs": WKT or None, "transform": GDAL
    6-tuple, "nodata": value or None}``. Raises InputError for a missing or damaged file
    or when rasterio is not installed.
    """
    rasterio = _rasterio()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                data = src.read()  # bands x H x W
                crs = src.crs.to_wkt() if src.crs is not None else None
                georef = {"crs": crs, "transform": tuple(src.transform.to_gdal()), "nodata": src.nodata}
    except rasterio.errors.RasterioError as e:
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
